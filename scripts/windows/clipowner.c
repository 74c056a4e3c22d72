/*
 * Test helper for scripts/test-windows: puts a line on the Windows clipboard as a Windows
 * program does, optionally marked the way password managers (KeePass, KeePassXC, Bitwarden,
 * 1Password) mark a secret.
 *
 *   clipowner.exe [--conceal] TEXT     TEXT is UTF-8; exit 0 once the clipboard holds it.
 */
#include <windows.h>
#include <string.h>

static int put(UINT format, const void *data, SIZE_T size)
{
    HGLOBAL mem = GlobalAlloc(GMEM_MOVEABLE, size);
    if (!mem)
        return 0;
    void *p = GlobalLock(mem);
    memcpy(p, data, size);
    GlobalUnlock(mem);
    if (!SetClipboardData(format, mem)) {
        GlobalFree(mem);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int conceal = argc == 3 && strcmp(argv[1], "--conceal") == 0;
    if (argc != 2 && !conceal)
        return 2;
    const char *text = argv[argc - 1];
    int wlen = MultiByteToWideChar(CP_UTF8, 0, text, -1, NULL, 0);
    if (wlen <= 0)
        return 2;
    WCHAR *wide = HeapAlloc(GetProcessHeap(), 0, wlen * sizeof(WCHAR));
    MultiByteToWideChar(CP_UTF8, 0, text, -1, wide, wlen);
    for (int i = 0; !OpenClipboard(NULL); i++) {
        if (i > 50)
            return 1;
        Sleep(20);
    }
    EmptyClipboard();
    int ok = put(CF_UNICODETEXT, wide, wlen * sizeof(WCHAR));
    if (conceal) {
        DWORD zero = 0;
        ok &= put(RegisterClipboardFormatA("ExcludeClipboardContentFromMonitorProcessing"), &zero, 4);
        ok &= put(RegisterClipboardFormatA("Clipboard Viewer Ignore"), &zero, 4);
        ok &= put(RegisterClipboardFormatA("CanIncludeInClipboardHistory"), &zero, 4);
        ok &= put(RegisterClipboardFormatA("CanUploadToCloudClipboard"), &zero, 4);
    }
    CloseClipboard();
    return ok ? 0 : 1;
}
