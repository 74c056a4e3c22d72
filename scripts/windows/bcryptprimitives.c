/*
 * A stand-in for bcryptprimitives.dll, for Wine 8 only.
 *
 * Rust's std on Windows imports ProcessPrng from bcryptprimitives.dll, which every Windows 10+
 * has and Wine 8 lacks, so yaku.exe would not start under Wine. scripts/wine-prefix builds this
 * file with mingw into the test prefix's system32. It is never shipped: real Windows has the
 * real DLL. ProcessPrng is served by RtlGenRandom (advapi32's SystemFunction036).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
