/*
 * libFuzzer harness of src/core/orbit_box.c and orbit_creds.c ("make -C
 * t/unit fuzz", then "../../build/fuzz/fuzz_box -max_total_time=60").  The
 * first byte chooses the AAD's length and the bit to flip; the rest is
 * the data.
 *
 *   - the data as a box, and as bytea text of credentials, never opens
 *     (nobody forges a tag), and reading it never goes out of bounds;
 *   - the data sealed opens to itself, and not once a bit of the box is
 *     flipped, nor under another AAD;
 *   - bytea text that reads back writes out the same (in lowercase);
 *   - a mask is at most ORBIT_CREDS_MASK_MAX bytes, the bullets and then
 *     a tail of the value;
 *   - the data as JSON: an object that passes orbit_creds_validate()
 *     hints the same keys, seals and opens to an equal object.
 *
 * A broken promise aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/orbit_core.h"
#include "core/orbit_box.h"
#include "core/orbit_creds.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const unsigned char  fz_key[ORBIT_BOX_KEY_LEN] = {
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0,
    0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7,
    0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4
};

#define FZ_AAD  "channel_connections:3f2504e0-4f89-41d3-9a0c-0305e82c3301:" \
                "0b7e4b8c-2f5d-4e8a-9d6b-1a2b3c4d5e6f"


static void
fz_box(const unsigned char *in, size_t len, unsigned choice)
{
    size_t          n, aad_len, bit;
    unsigned char  *box, *out;

    aad_len = (choice & 0x3f) % (sizeof(FZ_AAD) - 1);

    box = malloc(ORBIT_BOX_LEN(len));
    out = malloc(ORBIT_BOX_LEN(len));
    if (box == NULL || out == NULL) {
        abort();
    }

    /* as a box, it does not open */

    if (orbit_box_open(fz_key, FZ_AAD, aad_len, in, len, out, &n) == 0) {
        abort();
    }

    /* sealed, it opens to itself */

    if (orbit_box_seal(fz_key, FZ_AAD, aad_len, in, len, box) != 0
        || orbit_box_open(fz_key, FZ_AAD, aad_len, box, ORBIT_BOX_LEN(len),
                          out, &n) != 0
        || n != len || (len && memcmp(out, in, len) != 0))
    {
        abort();
    }

    if (orbit_box_open(fz_key, FZ_AAD, aad_len + 1, box, ORBIT_BOX_LEN(len),
                       out, &n) == 0)
    {
        abort();
    }

    bit = ((size_t) choice * 2654435761u) % (ORBIT_BOX_LEN(len) * 8);
    box[bit / 8] ^= (unsigned char) (1 << (bit % 8));

    if (orbit_box_open(fz_key, FZ_AAD, aad_len, box, ORBIT_BOX_LEN(len),
                       out, &n) == 0)
    {
        abort();
    }

    free(box);
    free(out);
}


static void
fz_bytea(const char *in, size_t len)
{
    char           *hex;
    size_t          n, i;
    json_t         *creds;
    unsigned char  *bytes;

    bytes = malloc(len / 2 + 1);
    hex = malloc(len + 3);
    if (bytes == NULL || hex == NULL) {
        abort();
    }

    if (orbit_bytea_unhex(bytes, in, len, &n) == 0) {
        if (orbit_bytea_hex(hex, bytes, n) != len) {
            abort();
        }

        for (i = 0; i < len; i++) {
            if (hex[i] != ((in[i] >= 'A' && in[i] <= 'F') ? in[i] | 0x20
                                                          : in[i]))
            {
                abort();
            }
        }
    }

    if (orbit_creds_open(fz_key, FZ_AAD, sizeof(FZ_AAD) - 1, in, len,
                         &creds) == ORBIT_CREDS_OK || creds != NULL)
    {
        abort();
    }

    free(bytes);
    free(hex);
}


static void
fz_mask(const char *in, size_t len)
{
    char    out[ORBIT_CREDS_MASK_MAX + 1];
    size_t  n, m;

    if (!orbit_valid_utf8(in, len)) {
        return;
    }

    n = orbit_creds_mask(out, in, len);
    m = sizeof(ORBIT_CREDS_MASK) - 1;

    if (n > ORBIT_CREDS_MASK_MAX || out[n] != '\0'
        || memcmp(out, ORBIT_CREDS_MASK, m) != 0
        || n - m > len
        || memcmp(out + m, in + len - (n - m), n - m) != 0
        || !orbit_valid_utf8(out, n)
        || (orbit_utf8_chars(in, len) >= ORBIT_CREDS_SHOWN_MIN)
           != (orbit_utf8_chars(out + m, n - m) == ORBIT_CREDS_SHOWN))
    {
        abort();
    }
}


static void
fz_json(const char *in, size_t len)
{
    char              *hex;
    json_t            *creds, *hint, *back, *v;
    const char        *key;
    orbit_v_errors_t   errs;

    creds = json_loadb(in, len, JSON_REJECT_DUPLICATES, NULL);

    if (!json_is_object(creds)) {
        json_decref(creds);
        return;
    }

    errs.n = 0;

    if (orbit_creds_validate(creds, &errs) != 0) {
        json_decref(creds);
        return;
    }

    hint = orbit_creds_hint(creds);
    if (hint == NULL || json_object_size(hint) != json_object_size(creds)) {
        abort();
    }

    json_object_foreach(creds, key, v) {
        if (json_object_get(hint, key) == NULL) {
            abort();
        }
    }

    hex = orbit_creds_seal(fz_key, FZ_AAD, sizeof(FZ_AAD) - 1, creds);

    if (hex == NULL
        || orbit_creds_open(fz_key, FZ_AAD, sizeof(FZ_AAD) - 1, hex,
                            strlen(hex), &back) != ORBIT_CREDS_OK
        || !json_equal(back, creds))
    {
        abort();
    }

    free(hex);
    json_decref(back);
    json_decref(hint);
    json_decref(creds);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned  choice;

    if (size < 1) {
        return 0;
    }

    choice = data[0];
    data++;
    size--;

    fz_box(data, size, choice);
    fz_bytea((const char *) data, size);
    fz_mask((const char *) data, size);
    fz_json((const char *) data, size);

    return 0;
}
