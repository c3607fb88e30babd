/*
 * Unit tests of src/core: JSON escaping, the error shape, routing,
 * passwords.
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_core.h"


static void
test_json(void)
{
    char         buf[128], *end;
    const char  *in;

    in = "a\"b\\c\n\x01\x7f\xc3\xa9";

    UNIT_OK(orbit_json_escaped_len(in, strlen(in)) == 23,
            "json: escaped length counts every escape");

    end = orbit_json_escape(buf, in, strlen(in));
    UNIT_STR(buf, (size_t) (end - buf), "a\\\"b\\\\c\\n\\u0001\\u007f\xc3\xa9",
             "json: quotes, backslash, controls escaped; UTF-8 kept");

    end = orbit_json_escape(buf, "", 0);
    UNIT_OK(end == buf, "json: empty string");
}


static void
test_error(void)
{
    char         buf[256];
    size_t       len, need;
    const char  *one[] = { "phone must be E.164" };
    const char  *two[] = { "phone must be E.164", "name \"x\" too long" };

    len = orbit_error_json(buf, sizeof(buf), 400, one, 1, 0);
    UNIT_STR(buf, len, "{\"statusCode\":400,\"message\":\"phone must be "
             "E.164\",\"error\":\"Bad Request\"}", "error: one message");

    len = orbit_error_json(buf, sizeof(buf), 400, two, 2, 0);
    UNIT_STR(buf, len, "{\"statusCode\":400,\"message\":[\"phone must be "
             "E.164\",\"name \\\"x\\\" too long\"],\"error\":\"Bad Request\"}",
             "error: a list of messages is an array, escaped");

    len = orbit_error_json(buf, sizeof(buf), 413, NULL, 0, 0);
    UNIT_STR(buf, len, "{\"statusCode\":413,\"message\":\"Payload Too Large\","
             "\"error\":\"Payload Too Large\"}",
             "error: no message takes the reason");

    len = orbit_error_json(buf, sizeof(buf), 400, one, 1, 1);
    UNIT_STR(buf, len, "{\"statusCode\":400,\"message\":[\"phone must be "
             "E.164\"],\"error\":\"Bad Request\"}",
             "error: a list of one is still a list");

    need = orbit_error_json(NULL, 0, 404, one, 1, 0);
    len = orbit_error_json(buf, sizeof(buf), 404, one, 1, 0);
    UNIT_OK(need == len, "error: size query equals the written length");

    len = orbit_error_json(buf, 10, 404, one, 1, 0);
    UNIT_OK(len == need, "error: too small a buffer is not written past");

    UNIT_OK(strcmp(orbit_http_reason(429), "Too Many Requests") == 0,
            "error: 429 reason");
    UNIT_OK(strcmp(orbit_http_reason(599), "Internal Server Error") == 0,
            "error: unknown 5xx reason");
}


static int  h_list, h_get, h_put, h_tag;

static const orbit_route_t  routes[] = {
    { "GET",    "/api/v1/contacts",               &h_list, 1 },
    { "GET",    "/api/v1/contacts/:id",           &h_get,  2 },
    { "PUT",    "/api/v1/contacts/:id",           &h_put,  3 },
    { "DELETE", "/api/v1/contacts/:id/tags/:tag", &h_tag,  4 },
};

#define NROUTES  (sizeof(routes) / sizeof(routes[0]))


static orbit_route_rc_e
find(const char *method, const char *path, orbit_route_match_t *m)
{
    return orbit_route_find(routes, NROUTES, method, strlen(method), path,
                            strlen(path), m);
}


static void
test_route(void)
{
    char                  allow[64];
    size_t                len;
    orbit_route_match_t   m;

    UNIT_OK(find("GET", "/api/v1/contacts", &m) == ORBIT_ROUTE_FOUND
            && m.route->handler == &h_list && m.nparams == 0,
            "route: literal path");

    UNIT_OK(find("GET", "/api/v1/contacts/", &m) == ORBIT_ROUTE_FOUND
            && m.route->handler == &h_list,
            "route: trailing slash is the same resource");

    UNIT_OK(find("GET", "/api/v1/contacts/abc-1", &m) == ORBIT_ROUTE_FOUND
            && m.route->handler == &h_get && m.nparams == 1,
            "route: one parameter");
    UNIT_STR(m.params[0].data, m.params[0].len, "abc-1",
             "route: parameter value");

    UNIT_OK(find("DELETE", "/api/v1/contacts/7/tags/VIP", &m)
            == ORBIT_ROUTE_FOUND && m.nparams == 2,
            "route: two parameters");
    UNIT_STR(m.params[1].data, m.params[1].len, "VIP",
             "route: second parameter value");

    UNIT_OK(find("POST", "/api/v1/contacts/7", &m) == ORBIT_ROUTE_BAD_METHOD,
            "route: known path, other method: 405");

    UNIT_OK(find("GET", "/api/v1/contactsx", &m) == ORBIT_ROUTE_NOT_FOUND,
            "route: prefix of a literal does not match");
    UNIT_OK(find("GET", "/api/v1/contacts//tags", &m) == ORBIT_ROUTE_NOT_FOUND,
            "route: empty parameter does not match");
    UNIT_OK(find("GET", "/api/v1/contacts/1/2", &m) == ORBIT_ROUTE_NOT_FOUND,
            "route: extra segment does not match");
    UNIT_OK(find("GET", "", &m) == ORBIT_ROUTE_NOT_FOUND,
            "route: empty path");

    len = orbit_route_allow(routes, NROUTES, "/api/v1/contacts/9", 18,
                            allow, sizeof(allow));
    UNIT_STR(allow, len, "GET, PUT", "route: Allow lists the methods");

    len = orbit_route_allow(routes, NROUTES, "/api/v1/contacts/9", 18,
                            allow, 5);
    UNIT_OK(len <= 5, "route: Allow stays in its buffer");
}


static void
test_password(void)
{
    char  enc[ORBIT_PASSWORD_ENCODED_LEN], enc2[ORBIT_PASSWORD_ENCODED_LEN];

    UNIT_OK(orbit_password_hash("s3cret!", 7, enc, sizeof(enc)) == 0,
            "password: hash");
    UNIT_OK(strncmp(enc, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0,
            "password: argon2id, encoded with its parameters");
    UNIT_OK(orbit_password_verify(enc, "s3cret!", 7) == 1,
            "password: the right password verifies");
    UNIT_OK(orbit_password_verify(enc, "s3cret?", 7) == 0,
            "password: a wrong password does not");
    UNIT_OK(orbit_password_verify("plain", "plain", 5) == 0,
            "password: a non-argon2id hash never verifies");

    (void) orbit_password_hash("s3cret!", 7, enc2, sizeof(enc2));
    UNIT_OK(strcmp(enc, enc2) != 0, "password: salted (two hashes differ)");

    UNIT_OK(orbit_password_hash("x", 1, enc, 20) != 0,
            "password: too small an output buffer fails");
}


static void
test_crypto(void)
{
    char  hex[ORBIT_SHA256_HEX_LEN + 1], t1[ORBIT_TOKEN_LEN(32) + 1],
          t2[ORBIT_TOKEN_LEN(32) + 1];

    orbit_sha256_hex(hex, "abc", 3);
    UNIT_STR(hex, strlen(hex), "ba7816bf8f01cfea414140de5dae2223"
             "b00361a396177a9cb410ff61f20015ad", "crypto: SHA-256 of abc");

    /* RFC 4231 test case 2 */
    UNIT_OK(orbit_hmac_sha256_hex(hex, "Jefe", 4,
                                  "what do ya want for nothing?", 28) == 0,
            "crypto: HMAC-SHA256");
    UNIT_STR(hex, strlen(hex), "5bdcc146bf60754e6a042426089575c7"
             "5a003f089d2739839dec58b964ec3843",
             "crypto: HMAC-SHA256 matches RFC 4231 case 2");

    UNIT_OK(orbit_equal("abc", 3, "abc", 3) == 1, "crypto: equal");
    UNIT_OK(orbit_equal("abc", 3, "abd", 3) == 0, "crypto: differ");
    UNIT_OK(orbit_equal("abc", 3, "abcd", 4) == 0,
            "crypto: different lengths differ");

    UNIT_OK(orbit_random_token(t1, 32) == 0
            && orbit_random_token(t2, 32) == 0,
            "crypto: random tokens");
    UNIT_OK(strlen(t1) == 43 && strspn(t1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "abcdefghijklmnopqrstuvwxyz"
                                       "0123456789-_") == 43,
            "crypto: 32 bytes are 43 base64url characters");
    UNIT_OK(strcmp(t1, t2) != 0, "crypto: two tokens differ");
    UNIT_OK(orbit_random_token(t1, 1) == 0 && strlen(t1) == 2,
            "crypto: one byte is two characters");
    UNIT_OK(orbit_random_token(t1, 65) == -1, "crypto: at most 64 bytes");
}


static void
test_jwt(void)
{
    char                 *tok, *none;
    orbit_jwt_claims_t    c, out;
    const unsigned char   key[] = "0123456789abcdef0123456789abcdef";

    memset(&c, 0, sizeof(c));
    strcpy(c.user_id, "7d6f6c1e-1111-4222-8333-944445555666");
    strcpy(c.tenant_id, "0a0b0c0d-1111-4222-8333-944445555666");
    strcpy(c.role, "ADMIN");
    c.iat = 1000;
    c.exp = 1900;

    tok = orbit_jwt_sign(key, 32, &c);
    UNIT_OK(tok != NULL && strncmp(tok, "eyJ", 3) == 0, "jwt: signed");

    UNIT_OK(orbit_jwt_verify(key, 32, tok, 1500, &out) == ORBIT_JWT_OK,
            "jwt: verifies before exp");
    UNIT_OK(strcmp(out.user_id, c.user_id) == 0
            && strcmp(out.tenant_id, c.tenant_id) == 0
            && strcmp(out.role, "ADMIN") == 0 && out.exp == 1900
            && out.iat == 1000 && out.account[0] == '\0',
            "jwt: claims come back (no account)");

    UNIT_OK(orbit_jwt_verify(key, 32, tok, 1900, &out) == ORBIT_JWT_EXPIRED,
            "jwt: expired at exp");
    UNIT_OK(orbit_jwt_verify((const unsigned char *) "another key 0123456789"
                             "abcdef", 32, tok, 1500, &out)
            == ORBIT_JWT_INVALID,
            "jwt: another key's token is invalid");

    tok[strlen(tok) - 2] ^= 1;
    UNIT_OK(orbit_jwt_verify(key, 32, tok, 1500, &out) == ORBIT_JWT_INVALID,
            "jwt: a changed signature is invalid");
    orbit_jwt_free(tok);

    /* a live-chat visitor's: its widget in "account" */
    strcpy(c.role, "VISITOR");
    strcpy(c.account, "lc_widget-key");
    tok = orbit_jwt_sign(key, 32, &c);
    UNIT_OK(tok != NULL
            && orbit_jwt_verify(key, 32, tok, 1500, &out) == ORBIT_JWT_OK
            && strcmp(out.account, "lc_widget-key") == 0
            && strcmp(out.role, "VISITOR") == 0,
            "jwt: a visitor's account comes back");
    orbit_jwt_free(tok);
    c.account[0] = '\0';

    /* {"alg":"none"} with the same claims: must never pass */
    none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
           "eyJ1c2VySWQiOiJ4Iiwicm9sZSI6IlNVUEVSQURNSU4iLCJleHAiOjk5OTk5OTk"
           "5OTl9.";
    UNIT_OK(orbit_jwt_verify(key, 32, none, 1500, &out) == ORBIT_JWT_INVALID,
            "jwt: alg none is refused");

    UNIT_OK(orbit_jwt_verify(key, 32, "not.a.jwt", 1500, &out)
            == ORBIT_JWT_INVALID, "jwt: garbage is invalid");

    c.tenant_id[0] = '\0';
    strcpy(c.role, "SUPERADMIN");
    tok = orbit_jwt_sign(key, 32, &c);
    UNIT_OK(orbit_jwt_verify(key, 32, tok, 1500, &out) == ORBIT_JWT_OK
            && out.tenant_id[0] == '\0',
            "jwt: a superadmin has no tenant");
    orbit_jwt_free(tok);
}


static void
test_secrets(void)
{
    char             err[128];
    orbit_secrets_t  s;
    const char      *good, *nokey, *short_jwt, *bad_hex, *junk;

    good = "# OrbitDesk\n"
           "  JWT_SECRET=0123456789abcdef0123456789abcdef!  \r\n"
           "\n"
           "OTHER=ignored\n"
           "ENCRYPTION_KEY=000102030405060708090a0b0c0d0e0f"
           "101112131415161718191A1B1C1D1E1F\n"
           "META_APP_SECRET=app-secret\n"
           "META_VERIFY_TOKEN=verify me";
    UNIT_OK(orbit_secrets_parse(good, strlen(good), &s, err, sizeof(err))
            == 0, "secrets: a good file parses");
    UNIT_OK(strcmp(s.meta_app_secret, "app-secret") == 0
            && strcmp(s.meta_verify_token, "verify me") == 0,
            "secrets: the Meta app's secret and verify token");
    UNIT_STR(s.jwt_secret, s.jwt_secret_len,
             "0123456789abcdef0123456789abcdef!",
             "secrets: JWT_SECRET trimmed of spaces and CR");
    UNIT_OK(s.encryption_key[0] == 0 && s.encryption_key[15] == 0x0f
            && s.encryption_key[31] == 0x1f,
            "secrets: ENCRYPTION_KEY decoded from hex, any case");

    nokey = "JWT_SECRET=0123456789abcdef0123456789abcdef\n";
    UNIT_OK(orbit_secrets_parse(nokey, strlen(nokey), &s, err, sizeof(err))
            == -1 && strstr(err, "ENCRYPTION_KEY") != NULL,
            "secrets: a missing key is named");

    nokey = "JWT_SECRET=0123456789abcdef0123456789abcdef\n"
            "ENCRYPTION_KEY=000102030405060708090a0b0c0d0e0f"
            "101112131415161718191a1b1c1d1e1f\n"
            "META_APP_SECRET=\n";
    UNIT_OK(orbit_secrets_parse(nokey, strlen(nokey), &s, err, sizeof(err))
            == -1 && strstr(err, "META_APP_SECRET") != NULL,
            "secrets: an empty META_APP_SECRET is refused");

    short_jwt = "JWT_SECRET=short\n";
    UNIT_OK(orbit_secrets_parse(short_jwt, strlen(short_jwt), &s, err,
                                sizeof(err)) == -1
            && strstr(err, "line 1") != NULL,
            "secrets: a short JWT_SECRET is refused with its line");

    bad_hex = "JWT_SECRET=0123456789abcdef0123456789abcdef\n"
              "ENCRYPTION_KEY=zz0102030405060708090a0b0c0d0e0f"
              "101112131415161718191a1b1c1d1e1f\n";
    UNIT_OK(orbit_secrets_parse(bad_hex, strlen(bad_hex), &s, err,
                                sizeof(err)) == -1,
            "secrets: non-hex ENCRYPTION_KEY refused");

    junk = "this is not a secrets file\n";
    UNIT_OK(orbit_secrets_parse(junk, strlen(junk), &s, err, sizeof(err))
            == -1, "secrets: junk refused");
}


int
main(void)
{
    test_json();
    test_error();
    test_route();
    test_password();
    test_crypto();
    test_jwt();
    test_secrets();

    return unit_done();
}
