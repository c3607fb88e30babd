/*
 * OrbitDesk core: AES-256-GCM boxes for secrets at rest (see orbit_box.h).
 */

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "orbit_core.h"
#include "orbit_box.h"


static int orbit_gcm(int enc, const unsigned char *key,
    const unsigned char *nonce, const void *aad1, size_t aad1_len,
    const void *aad2, size_t aad2_len, const unsigned char *in, size_t len,
    unsigned char *out, unsigned char *tag);


int
orbit_aes_gcm_seal(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const unsigned char nonce[ORBIT_BOX_NONCE_LEN], const void *aad,
    size_t aad_len, const void *plain, size_t len, unsigned char *out,
    unsigned char tag[ORBIT_BOX_TAG_LEN])
{
    return orbit_gcm(1, key, nonce, aad, aad_len, NULL, 0, plain, len, out,
                     tag);
}


int
orbit_aes_gcm_open(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const unsigned char nonce[ORBIT_BOX_NONCE_LEN], const void *aad,
    size_t aad_len, const unsigned char *cipher, size_t len,
    const unsigned char tag[ORBIT_BOX_TAG_LEN], unsigned char *out)
{
    return orbit_gcm(0, key, nonce, aad, aad_len, NULL, 0, cipher, len, out,
                     (unsigned char *) tag);
}


/* the version byte is authenticated too: it goes first in the AAD */

int
orbit_box_seal(const unsigned char key[ORBIT_BOX_KEY_LEN], const void *aad,
    size_t aad_len, const void *plain, size_t len, unsigned char *box)
{
    unsigned char  *nonce;

    if (len > ORBIT_BOX_MAX_PLAIN) {
        return -1;
    }

    box[0] = ORBIT_BOX_VERSION;
    nonce = box + 1;

    if (RAND_bytes(nonce, ORBIT_BOX_NONCE_LEN) != 1) {
        return -1;
    }

    return orbit_gcm(1, key, nonce, box, 1, aad, aad_len, plain, len,
                     box + 1 + ORBIT_BOX_NONCE_LEN,
                     box + 1 + ORBIT_BOX_NONCE_LEN + len);
}


int
orbit_box_open(const unsigned char key[ORBIT_BOX_KEY_LEN], const void *aad,
    size_t aad_len, const unsigned char *box, size_t box_len,
    unsigned char *out, size_t *len)
{
    size_t  n;

    *len = 0;

    if (box_len < ORBIT_BOX_OVERHEAD || box[0] != ORBIT_BOX_VERSION) {
        return -1;
    }

    n = box_len - ORBIT_BOX_OVERHEAD;

    if (orbit_gcm(0, key, box + 1, box, 1, aad, aad_len,
                  box + 1 + ORBIT_BOX_NONCE_LEN, n, out,
                  (unsigned char *) box + 1 + ORBIT_BOX_NONCE_LEN + n)
        != 0)
    {
        return -1;
    }

    *len = n;

    return 0;
}


/*
 * One GCM pass.  Decrypting, the tag is checked by the final call and out
 * is wiped when it does not match: nothing unauthenticated gets out.
 */

static int
orbit_gcm(int enc, const unsigned char *key, const unsigned char *nonce,
    const void *aad1, size_t aad1_len, const void *aad2, size_t aad2_len,
    const unsigned char *in, size_t len, unsigned char *out,
    unsigned char *tag)
{
    int              n, ok;
    EVP_CIPHER_CTX  *ctx;

    if (len > ORBIT_BOX_MAX_PLAIN || aad1_len > ORBIT_BOX_MAX_PLAIN
        || aad2_len > ORBIT_BOX_MAX_PLAIN)
    {
        return -1;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc)
         == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN,
                                ORBIT_BOX_NONCE_LEN, NULL) == 1
         && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) == 1;

    if (ok && aad1_len) {
        ok = EVP_CipherUpdate(ctx, NULL, &n, aad1, (int) aad1_len) == 1;
    }

    if (ok && aad2_len) {
        ok = EVP_CipherUpdate(ctx, NULL, &n, aad2, (int) aad2_len) == 1;
    }

    if (ok && len) {
        ok = EVP_CipherUpdate(ctx, out, &n, in, (int) len) == 1
             && (size_t) n == len;
    }

    if (ok && !enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
                                 ORBIT_BOX_TAG_LEN, tag) == 1;
    }

    /* GCM writes nothing here; decrypting, this is the tag check */
    ok = ok && EVP_CipherFinal_ex(ctx, out + len, &n) == 1;

    if (ok && enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                 ORBIT_BOX_TAG_LEN, tag) == 1;
    }

    EVP_CIPHER_CTX_free(ctx);

    if (!ok && len) {
        OPENSSL_cleanse(out, len);
    }

    return ok ? 0 : -1;
}


size_t
orbit_bytea_hex(char *out, const unsigned char *src, size_t len)
{
    out[0] = '\\';
    out[1] = 'x';

    orbit_hex(out + 2, src, len);

    return ORBIT_BYTEA_HEX_LEN(len);
}


int
orbit_bytea_unhex(unsigned char *out, const char *src, size_t len,
    size_t *n)
{
    *n = 0;

    if (len < 2 || src[0] != '\\' || src[1] != 'x' || (len & 1)
        || orbit_unhex(out, src + 2, len - 2) != 0)
    {
        return -1;
    }

    *n = (len - 2) / 2;

    return 0;
}
