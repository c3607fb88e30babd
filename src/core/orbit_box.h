/*
 * OrbitDesk core: secrets at rest, AES-256-GCM on OpenSSL EVP (plain C99,
 * no nginx headers).
 *
 * A box is what a column holds:
 *
 *     version (1 byte, 0x01) | nonce (12 random bytes) | ciphertext | tag
 *
 * The tag (16 bytes) covers the version byte and the caller's associated
 * data (AAD): a box opens only under the key and the AAD it was sealed
 * with.  Binding the AAD to the row that owns the box (its tenant and
 * id) makes a box copied into another row fail to open.  A random 96-bit
 * nonce per box keeps one key safe for far more boxes than a database of
 * channel credentials will hold (NIST SP 800-38D: 2^32).
 */

#ifndef _ORBIT_BOX_H_INCLUDED_
#define _ORBIT_BOX_H_INCLUDED_


#include <stddef.h>


#define ORBIT_BOX_VERSION     0x01
#define ORBIT_BOX_KEY_LEN     32
#define ORBIT_BOX_NONCE_LEN   12
#define ORBIT_BOX_TAG_LEN     16
#define ORBIT_BOX_OVERHEAD    (1 + ORBIT_BOX_NONCE_LEN + ORBIT_BOX_TAG_LEN)

/* what a box may hold: EVP counts in int */
#define ORBIT_BOX_MAX_PLAIN   (16 * 1024 * 1024)

#define ORBIT_BOX_LEN(plain_len)  ((plain_len) + ORBIT_BOX_OVERHEAD)


/*
 * Raw AES-256-GCM with a 12-byte nonce and a 16-byte tag: out gets len
 * bytes.  0, or -1 (OpenSSL failed, or len over ORBIT_BOX_MAX_PLAIN).
 * open returns -1 when the tag does not match; out is then zeroed.
 */
int orbit_aes_gcm_seal(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const unsigned char nonce[ORBIT_BOX_NONCE_LEN], const void *aad,
    size_t aad_len, const void *plain, size_t len, unsigned char *out,
    unsigned char tag[ORBIT_BOX_TAG_LEN]);
int orbit_aes_gcm_open(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const unsigned char nonce[ORBIT_BOX_NONCE_LEN], const void *aad,
    size_t aad_len, const unsigned char *cipher, size_t len,
    const unsigned char tag[ORBIT_BOX_TAG_LEN], unsigned char *out);

/* seals plain into box (ORBIT_BOX_LEN(len) bytes) with a fresh nonce */
int orbit_box_seal(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const void *aad, size_t aad_len, const void *plain, size_t len,
    unsigned char *box);

/*
 * Opens box (box_len bytes) into out (box_len - ORBIT_BOX_OVERHEAD bytes
 * at least) and sets *len.  -1 when it is short, of another version, or
 * not sealed under this key and AAD.
 */
int orbit_box_open(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const void *aad, size_t aad_len, const unsigned char *box,
    size_t box_len, unsigned char *out, size_t *len);


/*
 * PostgreSQL's bytea in text form (bytea_output = hex): "\x" and two
 * lowercase hex digits a byte.  orbit_bytea_hex writes that and a nul
 * (ORBIT_BYTEA_HEX_LEN(len) + 1 bytes) and returns its length;
 * orbit_bytea_unhex reads it back (either case) into out (len / 2 bytes)
 * and returns 0, or -1 when it is not that form.
 */
#define ORBIT_BYTEA_HEX_LEN(len)  (2 + 2 * (len))

size_t orbit_bytea_hex(char *out, const unsigned char *src, size_t len);
int orbit_bytea_unhex(unsigned char *out, const char *src, size_t len,
    size_t *n);


#endif /* _ORBIT_BOX_H_INCLUDED_ */
