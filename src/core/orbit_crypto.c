/*
 * OrbitDesk core: the small crypto every part needs, on OpenSSL: SHA-256
 * and HMAC-SHA256 in hex, timing-safe comparison, random tokens and ids.
 */

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "orbit_core.h"


static int orbit_hexval(char c);


static const char  orbit_hex_digits[] = "0123456789abcdef";

static const char  orbit_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
orbit_hex(char *dst, const unsigned char *src, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        *dst++ = orbit_hex_digits[src[i] >> 4];
        *dst++ = orbit_hex_digits[src[i] & 0xf];
    }

    *dst = '\0';
}


int
orbit_unhex(unsigned char *dst, const char *src, size_t len)
{
    int     hi, lo;
    size_t  i;

    if (len & 1) {
        return -1;
    }

    for (i = 0; i < len; i += 2) {
        hi = orbit_hexval(src[i]);
        lo = orbit_hexval(src[i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        dst[i / 2] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}


static int
orbit_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


void
orbit_sha256_hex(char out[ORBIT_SHA256_HEX_LEN + 1], const void *data,
    size_t len)
{
    unsigned char  md[SHA256_DIGEST_LENGTH];

    SHA256(data, len, md);
    orbit_hex(out, md, sizeof(md));
}


int
orbit_hmac_sha256_hex(char out[ORBIT_SHA256_HEX_LEN + 1], const void *key,
    size_t key_len, const void *data, size_t len)
{
    unsigned int   n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (HMAC(EVP_sha256(), key, (int) key_len, data, len, md, &n) == NULL
        || n != SHA256_DIGEST_LENGTH)
    {
        return -1;
    }

    orbit_hex(out, md, n);

    return 0;
}


int
orbit_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        return 0;
    }

    return CRYPTO_memcmp(a, b, alen) == 0;
}


/* nbytes random bytes as unpadded base64url: ceil(4 * nbytes / 3) chars */

int
orbit_random_token(char *out, size_t nbytes)
{
    size_t          i, o;
    unsigned int    v;
    unsigned char   buf[64];

    if (nbytes > sizeof(buf) || RAND_bytes(buf, (int) nbytes) != 1) {
        return -1;
    }

    o = 0;

    for (i = 0; i + 2 < nbytes; i += 3) {
        v = (buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2];
        out[o++] = orbit_b64url[(v >> 18) & 63];
        out[o++] = orbit_b64url[(v >> 12) & 63];
        out[o++] = orbit_b64url[(v >> 6) & 63];
        out[o++] = orbit_b64url[v & 63];
    }

    if (nbytes - i == 1) {
        v = buf[i] << 16;
        out[o++] = orbit_b64url[(v >> 18) & 63];
        out[o++] = orbit_b64url[(v >> 12) & 63];

    } else if (nbytes - i == 2) {
        v = (buf[i] << 16) | (buf[i + 1] << 8);
        out[o++] = orbit_b64url[(v >> 18) & 63];
        out[o++] = orbit_b64url[(v >> 12) & 63];
        out[o++] = orbit_b64url[(v >> 6) & 63];
    }

    out[o] = '\0';

    OPENSSL_cleanse(buf, sizeof(buf));

    return 0;
}


/* a version 4 UUID (RFC 9562), lowercase, as PostgreSQL writes one */

int
orbit_random_uuid(char out[ORBIT_UUID_LEN + 1])
{
    char           hex[33];
    unsigned char  b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return -1;
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    orbit_hex(hex, b, sizeof(b));

    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';

    return 0;
}
