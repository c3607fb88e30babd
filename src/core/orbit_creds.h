/*
 * OrbitDesk core: a channel connection's credentials — a flat JSON object
 * of secret strings ({"accessToken": "...", "appSecret": "..."}) — as the
 * channel_connections table keeps them (migration 006):
 *
 *   credentials       a box (orbit_box.h) of the object's compact JSON,
 *                     sealed under ENCRYPTION_KEY with the AAD
 *                     "channel_connections:<tenant id>:<connection id>",
 *                     so it opens only in the row it was written for;
 *   credentials_hint  the same keys, each value masked ("••••abcd"): what
 *                     the API shows.
 *
 * Plain C99 and jansson, no nginx: unit-tested in t/unit.  The nginx side
 * (the key from the secrets file, a log) is src/channels/
 * orbit_channel_creds.h.
 */

#ifndef _ORBIT_CREDS_H_INCLUDED_
#define _ORBIT_CREDS_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>

#include "orbit_box.h"
#include "orbit_validate.h"


#define ORBIT_CREDS_MAX_KEYS      20
#define ORBIT_CREDS_MAX_KEY       64       /* characters of a key */
#define ORBIT_CREDS_MAX_VALUE     4096     /* characters of a value */

/*
 * A value shows its last 4 characters only from 12 characters on: of a
 * shorter one, 4 would be a third or more of the secret.  Shorter values
 * are "••••" whatever their length.
 */
#define ORBIT_CREDS_SHOWN         4
#define ORBIT_CREDS_SHOWN_MIN     12
#define ORBIT_CREDS_MASK          "\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2"     \
                                  "\xe2\x80\xa2"
#define ORBIT_CREDS_MASK_MAX      (sizeof(ORBIT_CREDS_MASK) - 1             \
                                   + 4 * ORBIT_CREDS_SHOWN)

#define ORBIT_CREDS_AAD_PREFIX    "channel_connections:"
#define ORBIT_CREDS_AAD_LEN       (sizeof(ORBIT_CREDS_AAD_PREFIX) - 1       \
                                   + 36 + 1 + 36)


typedef enum {
    ORBIT_CREDS_OK = 0,
    ORBIT_CREDS_NOT_BYTEA,        /* not "\x" and hex digits */
    ORBIT_CREDS_NOT_OPENED,       /* other key, other row, tampered with */
    ORBIT_CREDS_NOT_OBJECT,       /* opened, but not a JSON object */
    ORBIT_CREDS_NO_MEMORY
} orbit_creds_rc_e;


/*
 * Adds to errs what is wrong with the contents of creds, a JSON object
 * (its type and size are the validation table's): keys of 1 to 64
 * letters, digits, '_', '-' or '.'; values strings of 1 to 4096
 * characters.  Returns the number of messages added.
 */
size_t orbit_creds_validate(json_t *creds, orbit_v_errors_t *errs);

/*
 * The AAD of the box of connection_id of tenant_id (both UUIDs, any
 * case; written lowercase).  Returns its length, or 0 when either is not
 * a UUID.
 */
size_t orbit_creds_aad(char out[ORBIT_CREDS_AAD_LEN + 1],
    const char *tenant_id, size_t tenant_len, const char *connection_id,
    size_t connection_len);

/* value (valid UTF-8) masked, nul-terminated in out; returns its length */
size_t orbit_creds_mask(char out[ORBIT_CREDS_MASK_MAX + 1],
    const char *value, size_t len);

/* a new object: creds' keys, each string value masked; NULL on failure */
json_t *orbit_creds_hint(json_t *creds);

/*
 * creds sealed, as a bytea literal ("\x..."): a nul-terminated string to
 * free() (not secret), or NULL.  The JSON text in between is wiped.
 */
char *orbit_creds_seal(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const char *aad, size_t aad_len, json_t *creds);

/*
 * The box in bytea text (as PostgreSQL sends a bytea column in text
 * format: "\x" and hex digits), opened: *out is a new JSON object to
 * json_decref(), or NULL when the answer is not ORBIT_CREDS_OK.  The
 * plaintext buffers are wiped; the object's strings are not (jansson
 * frees them as they are).
 */
orbit_creds_rc_e orbit_creds_open(const unsigned char key[ORBIT_BOX_KEY_LEN],
    const char *aad, size_t aad_len, const char *bytea, size_t len,
    json_t **out);

/* a few words for a log line (never a secret) */
const char *orbit_creds_strerror(orbit_creds_rc_e rc);


#endif /* _ORBIT_CREDS_H_INCLUDED_ */
