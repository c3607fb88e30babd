/*
 * OrbitDesk core: channel credentials sealed, opened and masked (see
 * orbit_creds.h).
 */

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "orbit_core.h"
#include "orbit_creds.h"


static int orbit_creds_key_valid(const char *key);


size_t
orbit_creds_validate(json_t *creds, orbit_v_errors_t *errs)
{
    size_t       n, len, chars;
    json_t      *v;
    const char  *key;
    unsigned     bad_key, bad_type, bad_len;

    if (!json_is_object(creds)) {
        return 0;
    }

    n = errs->n;
    bad_key = 0;
    bad_type = 0;
    bad_len = 0;

    json_object_foreach(creds, key, v) {
        bad_key |= !orbit_creds_key_valid(key);

        if (!json_is_string(v)) {
            bad_type = 1;
            continue;
        }

        len = json_string_length(v);

        if (!orbit_valid_utf8(json_string_value(v), len)
            || memchr(json_string_value(v), '\0', len) != NULL)
        {
            bad_type = 1;
            continue;
        }

        chars = orbit_utf8_chars(json_string_value(v), len);
        bad_len |= (chars == 0 || chars > ORBIT_CREDS_MAX_VALUE);
    }

    /* one message a kind of problem, as "each value in ..." says it */

    if (bad_key) {
        orbit_validate_add(errs, "credentials keys must be 1 to 64 letters, "
                           "digits, '_', '-' or '.'");
    }

    if (bad_type) {
        orbit_validate_add(errs, "each value in credentials must be a "
                           "string");
    }

    if (bad_len) {
        orbit_validate_add(errs, "each value in credentials must be 1 to "
                           "4096 characters");
    }

    return errs->n - n;
}


static int
orbit_creds_key_valid(const char *key)
{
    size_t  i;

    for (i = 0; key[i]; i++) {
        if (i == ORBIT_CREDS_MAX_KEY
            || !((key[i] >= 'a' && key[i] <= 'z')
                 || (key[i] >= 'A' && key[i] <= 'Z')
                 || (key[i] >= '0' && key[i] <= '9')
                 || key[i] == '_' || key[i] == '-' || key[i] == '.'))
        {
            return 0;
        }
    }

    return i > 0;
}


size_t
orbit_creds_aad(char out[ORBIT_CREDS_AAD_LEN + 1], const char *tenant_id,
    size_t tenant_len, const char *connection_id, size_t connection_len)
{
    char    *p;
    size_t   i;

    if (!orbit_valid_uuid(tenant_id, tenant_len)
        || !orbit_valid_uuid(connection_id, connection_len))
    {
        return 0;
    }

    p = out;
    memcpy(p, ORBIT_CREDS_AAD_PREFIX, sizeof(ORBIT_CREDS_AAD_PREFIX) - 1);
    p += sizeof(ORBIT_CREDS_AAD_PREFIX) - 1;

    for (i = 0; i < 36; i++) {
        *p++ = (tenant_id[i] >= 'A' && tenant_id[i] <= 'F')
               ? tenant_id[i] | 0x20 : tenant_id[i];
    }

    *p++ = ':';

    for (i = 0; i < 36; i++) {
        *p++ = (connection_id[i] >= 'A' && connection_id[i] <= 'F')
               ? connection_id[i] | 0x20 : connection_id[i];
    }

    *p = '\0';

    return (size_t) (p - out);
}


size_t
orbit_creds_mask(char out[ORBIT_CREDS_MASK_MAX + 1], const char *value,
    size_t len)
{
    size_t       n, k;
    const char  *p;

    n = sizeof(ORBIT_CREDS_MASK) - 1;
    memcpy(out, ORBIT_CREDS_MASK, n);

    if (orbit_utf8_chars(value, len) >= ORBIT_CREDS_SHOWN_MIN) {

        /* back over 4 characters: their lead bytes */

        p = value + len;

        for (k = 0; k < ORBIT_CREDS_SHOWN && p > value; k++) {
            do {
                p--;
            } while (p > value && ((unsigned char) *p & 0xc0) == 0x80);
        }

        if ((size_t) (value + len - p) <= 4 * ORBIT_CREDS_SHOWN) {
            memcpy(out + n, p, (size_t) (value + len - p));
            n += (size_t) (value + len - p);
        }
    }

    out[n] = '\0';

    return n;
}


json_t *
orbit_creds_hint(json_t *creds)
{
    json_t      *hint, *v;
    const char  *key;
    char         masked[ORBIT_CREDS_MASK_MAX + 1];

    if (!json_is_object(creds)) {
        return NULL;
    }

    hint = json_object();
    if (hint == NULL) {
        return NULL;
    }

    json_object_foreach(creds, key, v) {
        if (!json_is_string(v)) {
            json_decref(hint);
            return NULL;
        }

        orbit_creds_mask(masked, json_string_value(v), json_string_length(v));

        if (json_object_set_new(hint, key, json_string(masked)) != 0) {
            json_decref(hint);
            return NULL;
        }
    }

    return hint;
}


char *
orbit_creds_seal(const unsigned char key[ORBIT_BOX_KEY_LEN], const char *aad,
    size_t aad_len, json_t *creds)
{
    char           *plain, *hex;
    size_t          len;
    unsigned char  *box;

    if (!json_is_object(creds)) {
        return NULL;
    }

    len = json_dumpb(creds, NULL, 0, JSON_COMPACT|JSON_SORT_KEYS);

    if (len == 0 || len > ORBIT_BOX_MAX_PLAIN) {
        return NULL;
    }

    plain = malloc(len);
    box = malloc(ORBIT_BOX_LEN(len));
    hex = malloc(ORBIT_BYTEA_HEX_LEN(ORBIT_BOX_LEN(len)) + 1);

    if (plain == NULL || box == NULL || hex == NULL
        || json_dumpb(creds, plain, len, JSON_COMPACT|JSON_SORT_KEYS) != len
        || orbit_box_seal(key, aad, aad_len, plain, len, box) != 0)
    {
        free(hex);
        hex = NULL;

    } else {
        orbit_bytea_hex(hex, box, ORBIT_BOX_LEN(len));
    }

    if (plain) {
        OPENSSL_cleanse(plain, len);
    }

    free(plain);
    free(box);

    return hex;
}


orbit_creds_rc_e
orbit_creds_open(const unsigned char key[ORBIT_BOX_KEY_LEN], const char *aad,
    size_t aad_len, const char *bytea, size_t len, json_t **out)
{
    size_t             n, plain_len;
    json_t            *creds;
    unsigned char     *box, *plain;
    orbit_creds_rc_e   rc;

    *out = NULL;

    if (len < 2) {
        return ORBIT_CREDS_NOT_BYTEA;
    }

    box = malloc(len / 2);
    plain = malloc(len / 2);

    if (box == NULL || plain == NULL) {
        rc = ORBIT_CREDS_NO_MEMORY;
        goto done;
    }

    if (orbit_bytea_unhex(box, bytea, len, &n) != 0) {
        rc = ORBIT_CREDS_NOT_BYTEA;
        goto done;
    }

    if (orbit_box_open(key, aad, aad_len, box, n, plain, &plain_len) != 0) {
        rc = ORBIT_CREDS_NOT_OPENED;
        goto done;
    }

    creds = json_loadb((char *) plain, plain_len, JSON_REJECT_DUPLICATES,
                       NULL);

    OPENSSL_cleanse(plain, plain_len);

    if (!json_is_object(creds)) {
        json_decref(creds);
        rc = ORBIT_CREDS_NOT_OBJECT;
        goto done;
    }

    *out = creds;
    rc = ORBIT_CREDS_OK;

done:

    free(box);
    free(plain);

    return rc;
}


const char *
orbit_creds_strerror(orbit_creds_rc_e rc)
{
    switch (rc) {

    case ORBIT_CREDS_OK:
        return "opened";

    case ORBIT_CREDS_NOT_BYTEA:
        return "not a bytea box";

    case ORBIT_CREDS_NOT_OPENED:
        return "the box does not open: another key, another row, or "
               "tampered with";

    case ORBIT_CREDS_NOT_OBJECT:
        return "the box does not hold a JSON object";

    default:
        return "out of memory";
    }
}
