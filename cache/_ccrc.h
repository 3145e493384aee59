/* zlib's CRC-32 of short spans (a record header's 17 bytes, the shared header's 24), table-driven:
 * for cache/_cshared.c and cache/_ccompact.c. Values and keys go through zlib-ng (cache/crc.py);
 * these spans are too short for its call to pay. Call crc_init() once, in the module's init. */
#ifndef FANMILL_CCRC_H
#define FANMILL_CCRC_H

#include <stddef.h>
#include <stdint.h>

#define CRC_POLY 0xEDB88320u /* bit-reflected, as zlib's */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? CRC_POLY ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#endif
