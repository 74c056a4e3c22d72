/*
 * Test helper for scripts/test-windows: talks to yaku's control pipe the way a hostile or
 * broken client might, to show the pipe keeps the Unix socket's bounds. It finds the pipe by
 * its own reading of the user's SID, so the pipe's name is checked too.
 *
 *   pipeclient.exe send LINE   sends LINE and a newline, prints the reply line
 *   pipeclient.exe silent      connects, sends nothing, prints the reply and the ms it took
 *   pipeclient.exe flood N     holds N connections that send nothing; prints how many the
 *                              server closed at once ("closed=K of N")
 *   pipeclient.exe squat       takes the pipe's name first, as a program squatting it
 *                              would, prints "squatting", then reads each client's request
 *                              and hangs up without an answer, until it is killed
 * Exit 0 on an answer, 3 when there is no pipe, 1 on any other failure.
 */
#include <windows.h>
#include <sddl.h>
#include <stdio.h>
#include <string.h>

static WCHAR name[256];

static int pipe_name(void)
{
    HANDLE token;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
        return 0;
    BYTE buf[512];
    DWORD len;
    if (!GetTokenInformation(token, TokenUser, buf, sizeof buf, &len))
        return 0;
    LPWSTR sid;
    if (!ConvertSidToStringSidW(((TOKEN_USER *)buf)->User.Sid, &sid))
        return 0;
    swprintf(name, 256, L"\\\\.\\pipe\\yaku-%ls", sid);
    LocalFree(sid);
    CloseHandle(token);
    return 1;
}

/* Connects, waiting while every instance is busy; NULL when there is no pipe. */
static HANDLE connect_pipe(void)
{
    for (int i = 0; i < 250; i++) {
        HANDLE h = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
        if (h != INVALID_HANDLE_VALUE)
            return h;
        if (GetLastError() != ERROR_PIPE_BUSY)
            return NULL;
        Sleep(20);
    }
    return NULL;
}

static int print_reply(HANDLE h)
{
    char reply[65536];
    DWORD total = 0, n;
    while (total < sizeof reply - 1 && ReadFile(h, reply + total, sizeof reply - 1 - total, &n, NULL) && n > 0) {
        total += n;
        if (memchr(reply, '\n', total))
            break;
    }
    reply[total] = 0;
    fputs(reply, stdout);
    return total > 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !pipe_name())
        return 1;
    if (strcmp(argv[1], "flood") == 0 && argc == 3) {
        int n = atoi(argv[2]), closed = 0;
        HANDLE *hs = calloc(n, sizeof *hs);
        for (int i = 0; i < n; i++)
            if (!(hs[i] = connect_pipe()))
                return 1;
        Sleep(1000);
        for (int i = 0; i < n; i++) {
            DWORD avail;
            if (!PeekNamedPipe(hs[i], NULL, 0, NULL, &avail, NULL))
                closed++;
        }
        for (int i = 0; i < n; i++)
            CloseHandle(hs[i]);
        printf("closed=%d of %d\n", closed, n);
        return 0;
    }
    if (strcmp(argv[1], "squat") == 0) {
        HANDLE h = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                    PIPE_TYPE_BYTE | PIPE_WAIT, PIPE_UNLIMITED_INSTANCES,
                                    4096, 4096, 0, NULL);
        if (h == INVALID_HANDLE_VALUE)
            return 1;
        puts("squatting");
        fflush(stdout);
        for (;;) {
            if (ConnectNamedPipe(h, NULL) || GetLastError() == ERROR_PIPE_CONNECTED) {
                char buf[4096];
                DWORD n;
                ReadFile(h, buf, sizeof buf, &n, NULL);
                DisconnectNamedPipe(h);
            } else {
                Sleep(10);
            }
        }
    }
    HANDLE h = connect_pipe();
    if (!h)
        return 3;
    if (strcmp(argv[1], "send") == 0 && argc == 3) {
        DWORD n;
        WriteFile(h, argv[2], (DWORD)strlen(argv[2]), &n, NULL);
        WriteFile(h, "\n", 1, &n, NULL);
        return print_reply(h) ? 0 : 1;
    }
    if (strcmp(argv[1], "silent") == 0) {
        DWORD start = GetTickCount();
        int ok = print_reply(h);
        printf("ms=%lu\n", (unsigned long)(GetTickCount() - start));
        return ok ? 0 : 1;
    }
    return 1;
}
