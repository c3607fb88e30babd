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

    len = orbit_error_json(buf, sizeof(buf), 400, one, 1);
    UNIT_STR(buf, len, "{\"statusCode\":400,\"message\":\"phone must be "
             "E.164\",\"error\":\"Bad Request\"}", "error: one message");

    len = orbit_error_json(buf, sizeof(buf), 400, two, 2);
    UNIT_STR(buf, len, "{\"statusCode\":400,\"message\":[\"phone must be "
             "E.164\",\"name \\\"x\\\" too long\"],\"error\":\"Bad Request\"}",
             "error: a list of messages is an array, escaped");

    len = orbit_error_json(buf, sizeof(buf), 413, NULL, 0);
    UNIT_STR(buf, len, "{\"statusCode\":413,\"message\":\"Payload Too Large\","
             "\"error\":\"Payload Too Large\"}",
             "error: no message takes the reason");

    need = orbit_error_json(NULL, 0, 404, one, 1);
    len = orbit_error_json(buf, sizeof(buf), 404, one, 1);
    UNIT_OK(need == len, "error: size query equals the written length");

    len = orbit_error_json(buf, 10, 404, one, 1);
    UNIT_OK(len == need, "error: too small a buffer is not written past");

    UNIT_OK(strcmp(orbit_http_reason(429), "Too Many Requests") == 0,
            "error: 429 reason");
    UNIT_OK(strcmp(orbit_http_reason(599), "Internal Server Error") == 0,
            "error: unknown 5xx reason");
}


static int  h_list, h_get, h_put, h_tag;

static const orbit_route_t  routes[] = {
    { "GET",    "/api/v1/contacts",              &h_list },
    { "GET",    "/api/v1/contacts/:id",          &h_get },
    { "PUT",    "/api/v1/contacts/:id",          &h_put },
    { "DELETE", "/api/v1/contacts/:id/tags/:tag", &h_tag },
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


int
main(void)
{
    test_json();
    test_error();
    test_route();
    test_password();

    return unit_done();
}
