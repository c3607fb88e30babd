/*
 * Unit tests of src/core/orbit_validate: the whitelist validation of
 * request bodies and the format checks.
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_validate.h"


static const char *const  roles[] = { "ADMIN", "MANAGER", "AGENT", NULL };

static const orbit_v_field_t  contact[] = {
    { "phone", ORBIT_V_STRING, 1, 0, ORBIT_V_E164, 0, 16, NULL },
    { "name", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 1, 200, NULL },
    { "email", ORBIT_V_STRING, 0, 1, ORBIT_V_EMAIL, 0, 254, NULL },
    { "tags", ORBIT_V_STRINGS, 0, 0, ORBIT_V_ANY, 0, 50, NULL },
    { "customFields", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0, 100, NULL },
    { "optedIn", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { "role", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0, roles },
    { "limit", ORBIT_V_INT, 0, 0, ORBIT_V_ANY, 1, 100, NULL },
    { "expiresAt", ORBIT_V_DATETIME, 0, 1, ORBIT_V_ANY, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


static size_t
check(const char *json, orbit_v_errors_t *errs)
{
    size_t        n;
    json_t       *body;
    json_error_t  jerr;

    body = json_loads(json, JSON_ALLOW_NUL, &jerr);
    if (body == NULL) {
        errs->n = 99;
        return 99;
    }

    n = orbit_validate(body, contact, errs);
    json_decref(body);

    return n;
}


static int
has(orbit_v_errors_t *errs, const char *msg)
{
    size_t  i;

    for (i = 0; i < errs->n; i++) {
        if (strcmp(errs->messages[i], msg) == 0) {
            return 1;
        }
    }

    printf("#   no '%s' among %zu:", msg, errs->n);
    for (i = 0; i < errs->n; i++) {
        printf(" '%s'", errs->messages[i]);
    }
    printf("\n");

    return 0;
}


int
main(void)
{
    orbit_v_errors_t  e;

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"name\":\"Ann\","
                  "\"email\":\"ann@example.com\",\"tags\":[\"VIP\"],"
                  "\"customFields\":{\"city\":\"Oslo\"},\"optedIn\":true,"
                  "\"role\":\"AGENT\",\"limit\":5,"
                  "\"expiresAt\":\"2027-01-01T00:00:00Z\"}", &e) == 0,
            "validate: a good body passes");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"email\":null,"
                  "\"expiresAt\":null}", &e) == 0,
            "validate: nullable fields take null");

    UNIT_OK(check("{\"phone\":\"4155550123\"}", &e) == 1
            && has(&e, "phone must be E.164 (+ and 8 to 15 digits)"),
            "validate: a phone without + is not E.164");

    UNIT_OK(check("{}", &e) == 1 && has(&e, "phone should not be empty"),
            "validate: a missing required field");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"isAdmin\":true}", &e) == 1
            && has(&e, "property isAdmin should not exist"),
            "validate: whitelist: unknown properties refused");

    UNIT_OK(check("{\"phone\":12,\"optedIn\":\"yes\",\"tags\":\"VIP\","
                  "\"customFields\":[],\"limit\":1.5}", &e) == 5
            && has(&e, "phone must be a string")
            && has(&e, "optedIn must be a boolean value")
            && has(&e, "tags must be an array")
            && has(&e, "customFields must be an object")
            && has(&e, "limit must be an integer number"),
            "validate: wrong types, every one reported");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"tags\":[\"a\",3]}", &e) == 1
            && has(&e, "each value in tags must be a string"),
            "validate: arrays of strings");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"role\":\"ROOT\"}", &e) == 1
            && has(&e, "role must be one of the allowed values"),
            "validate: enumerations");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"limit\":0}", &e) == 1
            && has(&e, "limit must not be less than 1"),
            "validate: integer minimum");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"limit\":101}", &e) == 1
            && has(&e, "limit must not be greater than 100"),
            "validate: integer maximum");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"name\":\"\"}", &e) == 1
            && has(&e, "name must be longer than or equal to 1 characters"),
            "validate: minimum length");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"email\":\"not-an-email\"}",
                  &e) == 1 && has(&e, "email must be an email"),
            "validate: email format");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"expiresAt\":\"tomorrow\"}",
                  &e) == 1
            && has(&e, "expiresAt must be a valid ISO 8601 date string"),
            "validate: dates");

    UNIT_OK(check("{\"phone\":\"+14155550123\",\"name\":\"a\\u0000b\"}", &e)
            == 1 && has(&e, "name must be valid UTF-8 text"),
            "validate: NUL inside a string refused");

    UNIT_OK(check("[1,2]", &e) == 1
            && has(&e, "the body must be a JSON object"),
            "validate: the body must be an object");

    UNIT_OK(orbit_validate(NULL, contact, &e) == 1,
            "validate: no body: required fields missing");

    UNIT_OK(orbit_valid_e164("+12025550123", 12)
            && !orbit_valid_e164("+0123456789", 11)
            && !orbit_valid_e164("+1234567", 8)
            && !orbit_valid_e164("+1234567890123456", 17)
            && !orbit_valid_e164("+1202555012a", 12),
            "e164: + then 8 to 15 digits, no leading 0");

    UNIT_OK(orbit_valid_email("a.b+c@example.co.uk", 19)
            && !orbit_valid_email("a@b", 3)
            && !orbit_valid_email("a@@b.com", 8)
            && !orbit_valid_email("@b.com", 6)
            && !orbit_valid_email("a b@c.com", 9)
            && !orbit_valid_email("a@b..com", 8),
            "email: the usual shapes");

    UNIT_OK(orbit_valid_uuid("7d6f6c1e-1111-4222-8333-944445555666", 36)
            && !orbit_valid_uuid("7d6f6c1e-1111-4222-8333-94444555566", 35)
            && !orbit_valid_uuid("7d6f6c1e-1111-4222-8333_944445555666", 36)
            && !orbit_valid_uuid("zd6f6c1e-1111-4222-8333-944445555666", 36),
            "uuid: 8-4-4-4-12 hex");

    UNIT_OK(orbit_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14)
            && !orbit_valid_utf8("\xc3", 1)
            && !orbit_valid_utf8("\xc0\xaf", 2)
            && !orbit_valid_utf8("\xe0\x80\xaf", 3)
            && !orbit_valid_utf8("\xed\xa0\x80", 3)
            && !orbit_valid_utf8("\xf4\x90\x80\x80", 4)
            && !orbit_valid_utf8("\xff", 1),
            "utf8: valid text, truncated, overlong, surrogate, too big");

    UNIT_OK(orbit_valid_slug("acme-2", 6) && !orbit_valid_slug("-acme", 5)
            && !orbit_valid_slug("Acme", 4) && !orbit_valid_slug("", 0),
            "slug: lowercase, digits, dashes");

    return unit_done();
}
