/*
 * Test helper for scripts/test-windows: puts a line on the Windows clipboard as a Windows
 * program does, optionally marked the way password managers (KeePass, KeePassXC, Bitwarden,
 * 1Password) mark a secret.
 *
 *   clipowner.exe [--conceal] TEXT     exit 0 once the clipboard holds TEXT (kept 3 s).
 */
#include <windows.h>
#include <string.h>
#include <wchar.h>

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

/* wmain (built with -municode): a char** argv would arrive in the ANSI code page. */
int wmain(int argc, wchar_t **argv)
{
    int conceal = argc == 3 && wcscmp(argv[1], L"--conceal") == 0;
    if (argc != 2 && !conceal)
        return 2;
    const WCHAR *wide = argv[argc - 1];
    int wlen = (int)wcslen(wide) + 1;
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
    /* Stay the clipboard's owner a while: Wine may drop an exited owner's data. */
    Sleep(3000);
    return ok ? 0 : 1;
}
