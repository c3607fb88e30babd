/*
 * Unit tests of src/core/orbit_box.c and orbit_creds.c: AES-256-GCM
 * against the test vectors of the GCM specification (McGrew and Viega,
 * test cases 13, 14 and 16, the AES-256 ones), the box (round trip; every
 * byte tampered with, another AAD, another key, truncated: refused),
 * bytea text, and channel credentials (seal, open, the row binding, the
 * masks and hints, the checks).
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_core.h"
#include "core/orbit_box.h"
#include "core/orbit_creds.h"


#define T1  "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
#define T2  "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define C1  "0b7e4b8c-2f5d-4e8a-9d6b-1a2b3c4d5e6f"
#define C2  "9f1c2d3e-4b5a-4c6d-8e7f-a0b1c2d3e4f5"


static void
unhex(unsigned char *out, const char *hex)
{
    if (orbit_unhex(out, hex, strlen(hex)) != 0) {
        abort();
    }
}


static void
test_gcm_vectors(void)
{
    unsigned char  key[32], nonce[12], aad[20], plain[60], cipher[64],
                   want[64], tag[16], want_tag[16], back[64];

    /* test case 13: zero key, zero nonce, nothing */

    memset(key, 0, sizeof(key));
    memset(nonce, 0, sizeof(nonce));
    unhex(want_tag, "530f8afbc74536b9a963b4f1c4cb738b");

    UNIT_OK(orbit_aes_gcm_seal(key, nonce, NULL, 0, NULL, 0, cipher, tag)
            == 0 && memcmp(tag, want_tag, 16) == 0,
            "gcm: test case 13 (empty), its tag");
    UNIT_OK(orbit_aes_gcm_open(key, nonce, NULL, 0, cipher, 0, tag, back)
            == 0, "gcm: test case 13 opens");

    /* test case 14: one zero block */

    memset(plain, 0, 16);
    unhex(want, "cea7403d4d606b6e074ec5d3baf39d18");
    unhex(want_tag, "d0d1c8a799996bf0265b98b5d48ab919");

    UNIT_OK(orbit_aes_gcm_seal(key, nonce, NULL, 0, plain, 16, cipher, tag)
            == 0 && memcmp(cipher, want, 16) == 0
            && memcmp(tag, want_tag, 16) == 0,
            "gcm: test case 14, ciphertext and tag");

    /* test case 16: 60 bytes, 20 bytes of AAD */

    unhex(key, "feffe9928665731c6d6a8f9467308308"
               "feffe9928665731c6d6a8f9467308308");
    unhex(nonce, "cafebabefacedbaddecaf888");
    unhex(aad, "feedfacedeadbeeffeedfacedeadbeefabaddad2");
    unhex(plain, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d"
                 "8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657"
                 "ba637b39");
    unhex(want, "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd"
                "2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0a"
                "bcc9f662");
    unhex(want_tag, "76fc6ece0f4e1768cddf8853bb2d551b");

    UNIT_OK(orbit_aes_gcm_seal(key, nonce, aad, 20, plain, 60, cipher, tag)
            == 0 && memcmp(cipher, want, 60) == 0
            && memcmp(tag, want_tag, 16) == 0,
            "gcm: test case 16, ciphertext and tag");

    UNIT_OK(orbit_aes_gcm_open(key, nonce, aad, 20, want, 60, want_tag, back)
            == 0 && memcmp(back, plain, 60) == 0,
            "gcm: test case 16 opens to its plaintext");

    want_tag[15] ^= 1;
    memset(back, 0x5a, sizeof(back));

    UNIT_OK(orbit_aes_gcm_open(key, nonce, aad, 20, want, 60, want_tag, back)
            == -1, "gcm: a wrong tag is refused");

    memset(want, 0, 60);
    UNIT_OK(memcmp(back, want, 60) == 0,
            "gcm: ... and nothing unauthenticated is left in out");
}


static void
test_box(void)
{
    int            bad;
    size_t         i, n, len;
    unsigned char  key[32], key2[32], box[ORBIT_BOX_LEN(64)],
                   box2[ORBIT_BOX_LEN(64)], out[64];
    const char    *plain = "{\"accessToken\":\"EAAG-secret-1234\"}";

    for (i = 0; i < 32; i++) {
        key[i] = (unsigned char) i;
        key2[i] = (unsigned char) i;
    }

    key2[31] ^= 0x80;
    len = strlen(plain);

    UNIT_OK(orbit_box_seal(key, "aad", 3, plain, len, box) == 0,
            "box: seal");
    UNIT_OK(box[0] == ORBIT_BOX_VERSION, "box: version byte first");
    bad = 0;

    for (i = 0; i + 6 <= ORBIT_BOX_LEN(len); i++) {
        bad += memcmp(box + i, "secret", 6) == 0;
    }

    UNIT_OK(bad == 0, "box: the plaintext is not in it");

    UNIT_OK(orbit_box_open(key, "aad", 3, box, ORBIT_BOX_LEN(len), out, &n)
            == 0 && n == len && memcmp(out, plain, len) == 0,
            "box: round trip");

    UNIT_OK(orbit_box_seal(key, "aad", 3, plain, len, box2) == 0
            && memcmp(box + 1, box2 + 1, ORBIT_BOX_NONCE_LEN) != 0
            && memcmp(box, box2, ORBIT_BOX_LEN(len)) != 0,
            "box: a fresh nonce each time, so another box");

    bad = 0;

    for (i = 0; i < ORBIT_BOX_LEN(len); i++) {
        memcpy(box2, box, ORBIT_BOX_LEN(len));
        box2[i] ^= 0x01;
        bad += orbit_box_open(key, "aad", 3, box2, ORBIT_BOX_LEN(len), out,
                              &n) == 0;
        box2[i] ^= 0x81;
        bad += orbit_box_open(key, "aad", 3, box2, ORBIT_BOX_LEN(len), out,
                              &n) == 0;
    }

    UNIT_OK(bad == 0, "box: a flipped bit anywhere (version, nonce, "
            "ciphertext, tag) is refused");

    UNIT_OK(orbit_box_open(key, "aae", 3, box, ORBIT_BOX_LEN(len), out, &n)
            == -1, "box: another AAD is refused");
    UNIT_OK(orbit_box_open(key, "aad", 2, box, ORBIT_BOX_LEN(len), out, &n)
            == -1, "box: a shorter AAD is refused");
    UNIT_OK(orbit_box_open(key, NULL, 0, box, ORBIT_BOX_LEN(len), out, &n)
            == -1, "box: no AAD is refused");
    UNIT_OK(orbit_box_open(key2, "aad", 3, box, ORBIT_BOX_LEN(len), out, &n)
            == -1, "box: another key is refused");

    bad = 0;

    for (i = 0; i < ORBIT_BOX_LEN(len); i++) {
        bad += orbit_box_open(key, "aad", 3, box, i, out, &n) == 0;
    }

    UNIT_OK(bad == 0, "box: every truncation is refused");

    memcpy(box2, box, ORBIT_BOX_LEN(len));
    box2[ORBIT_BOX_LEN(len)] = 0;
    UNIT_OK(orbit_box_open(key, "aad", 3, box2, ORBIT_BOX_LEN(len) + 1, out,
                           &n) == -1, "box: a byte appended is refused");

    UNIT_OK(orbit_box_seal(key, NULL, 0, "", 0, box2) == 0
            && orbit_box_open(key, NULL, 0, box2, ORBIT_BOX_OVERHEAD, out,
                              &n) == 0 && n == 0,
            "box: an empty plaintext round-trips");

    box2[0] = 0x02;
    UNIT_OK(orbit_box_open(key, NULL, 0, box2, ORBIT_BOX_OVERHEAD, out, &n)
            == -1, "box: an unknown version is refused");
}


static void
test_bytea(void)
{
    char           hex[32];
    size_t         n, len;
    unsigned char  out[16];

    static const unsigned char  in[] = { 0x00, 0x7f, 0xab, 0xff };

    len = orbit_bytea_hex(hex, in, sizeof(in));
    UNIT_STR(hex, len, "\\x007fabff", "bytea: \\x and lowercase hex");
    UNIT_OK(hex[len] == '\0', "bytea: nul-terminated");

    UNIT_OK(orbit_bytea_unhex(out, "\\x007FabfF", 10, &n) == 0 && n == 4
            && memcmp(out, in, 4) == 0, "bytea: read back, either case");
    UNIT_OK(orbit_bytea_unhex(out, "\\x", 2, &n) == 0 && n == 0,
            "bytea: empty");

    UNIT_OK(orbit_bytea_unhex(out, "007f", 4, &n) == -1,
            "bytea: no \\x: refused");
    UNIT_OK(orbit_bytea_unhex(out, "\\x007", 5, &n) == -1,
            "bytea: an odd digit: refused");
    UNIT_OK(orbit_bytea_unhex(out, "\\x0g", 4, &n) == -1,
            "bytea: not hex: refused");
    UNIT_OK(orbit_bytea_unhex(out, "\\000", 4, &n) == -1,
            "bytea: the escape format: refused");
    UNIT_OK(orbit_bytea_unhex(out, "", 0, &n) == -1, "bytea: nothing");
}


static void
test_creds(void)
{
    int                bad;
    char              *hex, *hex2, aad[ORBIT_CREDS_AAD_LEN + 1],
                       aad2[ORBIT_CREDS_AAD_LEN + 1];
    size_t             aad_len, aad2_len, i, len;
    json_t            *creds, *out, *hint;
    unsigned char      key[32], key2[32];
    orbit_creds_rc_e   rc;

    for (i = 0; i < 32; i++) {
        key[i] = (unsigned char) (0xa0 + i);
    }

    memcpy(key2, key, 32);
    key2[0] ^= 1;

    aad_len = orbit_creds_aad(aad, T1, 36, C1, 36);
    UNIT_STR(aad, aad_len, "channel_connections:" T1 ":" C1,
             "creds: the AAD names the table, the tenant, the row");

    len = orbit_creds_aad(aad2, "3F2504E0-4F89-41D3-9A0C-0305E82C3301", 36,
                          C1, 36);
    UNIT_OK(len == aad_len && memcmp(aad, aad2, len) == 0,
            "creds: ... in lowercase, however the ids came");
    UNIT_OK(orbit_creds_aad(aad2, "nope", 4, C1, 36) == 0
            && orbit_creds_aad(aad2, T1, 36, C1, 35) == 0,
            "creds: not UUIDs: no AAD");

    creds = json_pack("{s:s, s:s}", "accessToken", "EAAG-abcdef-123456789",
                      "appSecret", "s3cr3t-\xc3\xa9t\xc3\xa9-long-enough");

    hex = orbit_creds_seal(key, aad, aad_len, creds);
    UNIT_OK(hex != NULL && strncmp(hex, "\\x01", 4) == 0,
            "creds: sealed to a bytea literal of a version 1 box");
    UNIT_OK(hex && strstr(hex, "EAAG") == NULL,
            "creds: ... without the plaintext");

    rc = orbit_creds_open(key, aad, aad_len, hex, strlen(hex), &out);
    UNIT_OK(rc == ORBIT_CREDS_OK && json_equal(out, creds),
            "creds: opened, the same object");
    json_decref(out);

    aad2_len = orbit_creds_aad(aad2, T2, 36, C1, 36);
    rc = orbit_creds_open(key, aad2, aad2_len, hex, strlen(hex), &out);
    UNIT_OK(rc == ORBIT_CREDS_NOT_OPENED && out == NULL,
            "creds: in another tenant's row it does not open");

    aad2_len = orbit_creds_aad(aad2, T1, 36, C2, 36);
    rc = orbit_creds_open(key, aad2, aad2_len, hex, strlen(hex), &out);
    UNIT_OK(rc == ORBIT_CREDS_NOT_OPENED,
            "creds: nor in another row of the same tenant");

    rc = orbit_creds_open(key2, aad, aad_len, hex, strlen(hex), &out);
    UNIT_OK(rc == ORBIT_CREDS_NOT_OPENED, "creds: nor under another key");

    bad = 0;
    hex2 = strdup(hex);

    for (i = 2; hex2 && i < strlen(hex2); i++) {
        hex2[i] = (hex2[i] == '0') ? '1' : '0';
        rc = orbit_creds_open(key, aad, aad_len, hex2, strlen(hex2), &out);
        bad += (rc != ORBIT_CREDS_NOT_OPENED);
        json_decref(out);
        hex2[i] = hex[i];
    }

    UNIT_OK(hex2 && bad == 0, "creds: any hex digit changed: not opened");

    bad = 0;

    for (i = 0; hex2 && i < strlen(hex2); i++) {
        rc = orbit_creds_open(key, aad, aad_len, hex2, i, &out);
        bad += (rc == ORBIT_CREDS_OK);
    }

    UNIT_OK(bad == 0, "creds: any truncation: not opened");

    rc = orbit_creds_open(key, aad, aad_len, hex + 2, strlen(hex) - 2, &out);
    UNIT_OK(rc == ORBIT_CREDS_NOT_BYTEA, "creds: without \\x: not bytea");

    free(hex2);
    free(hex);

    /* what the API shows */

    hint = orbit_creds_hint(creds);
    UNIT_OK(hint && json_object_size(hint) == 2
            && strcmp(json_string_value(json_object_get(hint, "accessToken")),
                      ORBIT_CREDS_MASK "6789") == 0
            && strcmp(json_string_value(json_object_get(hint, "appSecret")),
                      ORBIT_CREDS_MASK "ough") == 0,
            "creds: the hint, the same keys masked");
    json_decref(hint);
    json_decref(creds);

    creds = json_pack("{s:i}", "n", 1);
    out = json_string("x");
    UNIT_OK(orbit_creds_hint(creds) == NULL
            && orbit_creds_seal(key, aad, aad_len, out) == NULL,
            "creds: no hint of a number, no box of a non-object");
    json_decref(creds);
    json_decref(out);
}


static void
test_mask(void)
{
    char    out[ORBIT_CREDS_MASK_MAX + 1];
    size_t  len;

    len = orbit_creds_mask(out, "sk_live_abcdefgh1234", 20);
    UNIT_STR(out, len, "\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2"
             "1234", "mask: bullets and the last 4 characters");

    len = orbit_creds_mask(out, "abcdefghijkl", 12);
    UNIT_STR(out, len, ORBIT_CREDS_MASK "ijkl",
             "mask: from 12 characters on, the last 4 are shown");

    len = orbit_creds_mask(out, "abcdefghijk", 11);
    UNIT_STR(out, len, ORBIT_CREDS_MASK,
             "mask: 11 characters: nothing shown");

    len = orbit_creds_mask(out, "abcd", 4);
    UNIT_STR(out, len, ORBIT_CREDS_MASK, "mask: 4 characters: nothing shown");

    len = orbit_creds_mask(out, "", 0);
    UNIT_STR(out, len, ORBIT_CREDS_MASK, "mask: empty");

    /* 12 characters, the last 4 of 2, 3, 4 and 1 bytes */
    len = orbit_creds_mask(out, "12345678\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91"
                           "z", 18);
    UNIT_STR(out, len, ORBIT_CREDS_MASK "\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91"
             "z", "mask: characters, not bytes");

    len = orbit_creds_mask(out, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                           22);
    UNIT_STR(out, len, ORBIT_CREDS_MASK, "mask: 11 two-byte characters: "
             "nothing shown");
}


static void
test_validate(void)
{
    size_t             i;
    json_t            *c;
    orbit_v_errors_t   errs;
    char               key[70], value[4100 * 2 + 1];

    errs.n = 0;
    c = json_pack("{s:s, s:s, s:s}", "api_key", "x", "bot-token.v2", "y",
                  "A9", "\xc3\xa9");
    UNIT_OK(orbit_creds_validate(c, &errs) == 0, "validate: good keys");
    json_decref(c);

    c = json_pack("{s:s}", "has space", "x");
    UNIT_OK(orbit_creds_validate(c, &errs) == 1
            && strstr(errs.messages[0], "credentials keys must be") != NULL,
            "validate: a key with a space");
    json_decref(c);

    memset(key, 'k', 65);
    key[65] = '\0';
    errs.n = 0;
    c = json_object();
    json_object_set_new(c, key, json_string("x"));
    UNIT_OK(orbit_creds_validate(c, &errs) == 1, "validate: a 65-character "
            "key");
    key[64] = '\0';
    json_object_clear(c);
    json_object_set_new(c, key, json_string("x"));
    errs.n = 0;
    UNIT_OK(orbit_creds_validate(c, &errs) == 0, "validate: 64 is fine");
    json_decref(c);

    errs.n = 0;
    c = json_pack("{s:i, s:{}, s:n, s:b}", "a", 1, "b", "c", "d", 1);
    UNIT_OK(orbit_creds_validate(c, &errs) == 1
            && strcmp(errs.messages[0], "each value in credentials must be "
                      "a string") == 0,
            "validate: numbers, objects, null, booleans: one message");
    json_decref(c);

    errs.n = 0;
    c = json_pack("{s:s}", "", "x");
    UNIT_OK(orbit_creds_validate(c, &errs) == 1, "validate: an empty key");
    json_decref(c);

    errs.n = 0;
    memset(value, 'v', 4097);
    c = json_object();
    json_object_set_new(c, "long", json_stringn(value, 4097));
    json_object_set_new(c, "empty", json_string(""));
    UNIT_OK(orbit_creds_validate(c, &errs) == 1
            && strstr(errs.messages[0], "1 to 4096 characters") != NULL,
            "validate: 4097 characters, or none");
    json_object_set_new(c, "long", json_stringn(value, 4096));
    json_object_del(c, "empty");
    errs.n = 0;
    UNIT_OK(orbit_creds_validate(c, &errs) == 0,
            "validate: 4096 characters are fine");

    /* 4096 two-byte characters: 8192 bytes, still 4096 characters */
    for (i = 0; i < 4096; i++) {
        value[2 * i] = '\xc3';
        value[2 * i + 1] = '\xa9';
    }

    json_object_set_new(c, "long", json_stringn(value, 8192));
    errs.n = 0;
    UNIT_OK(orbit_creds_validate(c, &errs) == 0,
            "validate: counted in characters");
    json_decref(c);

    errs.n = 0;
    c = json_object();
    json_object_set_new(c, "nul", json_stringn("a\0b", 3));
    UNIT_OK(orbit_creds_validate(c, &errs) == 1, "validate: a NUL inside");
    json_decref(c);
}


static void
test_uuid(void)
{
    char  a[ORBIT_UUID_LEN + 1], b[ORBIT_UUID_LEN + 1];

    UNIT_OK(orbit_random_uuid(a) == 0 && orbit_random_uuid(b) == 0
            && orbit_valid_uuid(a, strlen(a)) && strcmp(a, b) != 0,
            "uuid: two valid, different");
    UNIT_OK(a[14] == '4' && strchr("89ab", a[19]) != NULL,
            "uuid: version 4, RFC variant");
}


int
main(void)
{
    test_gcm_vectors();
    test_box();
    test_bytea();
    test_creds();
    test_mask();
    test_validate();
    test_uuid();

    return unit_done();
}
