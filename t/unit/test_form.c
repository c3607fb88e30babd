/*
 * Unit tests of src/core/orbit_form.c: the form-urlencoded parser (good
 * and malformed bodies), escaping and its round trip, and Twilio's
 * signature with the documented test vector (PROTOCOLS.md section 4).
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_form.h"


#define MAX_FIELDS  16


static orbit_form_field_t  f[MAX_FIELDS];
static char                buf[ORBIT_FORM_BUF_SIZE(512)];


/* the fields as "name=value;" (decoded), or "!" when refused */

static const char *
parse(const char *body, size_t max)
{
    size_t       i, n;
    static char  out[1024];

    if (orbit_form_parse(body, strlen(body), buf, f, max, &n) != 0) {
        return "!";
    }

    out[0] = '\0';

    for (i = 0; i < n; i++) {
        if (strlen(f[i].name) != f[i].name_len
            || strlen(f[i].value) != f[i].value_len)
        {
            return "length";
        }

        strcat(out, f[i].name);
        strcat(out, "=");
        strcat(out, f[i].value);
        strcat(out, ";");
    }

    return out;
}


static void
test_parse(void)
{
    size_t  n;

    UNIT_STR(parse("a=1&b=2", MAX_FIELDS), strlen(parse("a=1&b=2",
             MAX_FIELDS)), "a=1;b=2;", "two fields");
    UNIT_OK(strcmp(parse("", MAX_FIELDS), "") == 0, "empty body: no field");
    UNIT_OK(strcmp(parse("Body=hello+world", MAX_FIELDS),
                   "Body=hello world;") == 0, "'+' is a space");
    UNIT_OK(strcmp(parse("From=%2B14155551234", MAX_FIELDS),
                   "From=+14155551234;") == 0, "%2B is a plus");
    UNIT_OK(strcmp(parse("x=%2b%3D%26%c3%A9", MAX_FIELDS),
                   "x=+=&\xc3\xa9;") == 0, "either case of hex digits");
    UNIT_OK(strcmp(parse("a%20b=c+d%2Be", MAX_FIELDS),
                   "a b=c d+e;") == 0, "names are decoded too");
    UNIT_OK(strcmp(parse("a=&b=", MAX_FIELDS), "a=;b=;") == 0,
            "empty values");
    UNIT_OK(strcmp(parse("a&b=1", MAX_FIELDS), "a=;b=1;") == 0,
            "a name without '=' has an empty value");
    UNIT_OK(strcmp(parse("&a=1&&b=2&", MAX_FIELDS), "a=1;b=2;") == 0,
            "empty parts are skipped");
    UNIT_OK(strcmp(parse("m=1&m=2&m=1", MAX_FIELDS), "m=1;m=2;m=1;") == 0,
            "repeated names: each, in order");
    UNIT_OK(strcmp(parse("a=b=c", MAX_FIELDS), "a=b=c;") == 0,
            "'=' in a value");

    UNIT_OK(strcmp(parse("a=%", MAX_FIELDS), "!") == 0, "a lone %");
    UNIT_OK(strcmp(parse("a=%4", MAX_FIELDS), "!") == 0, "% and one digit");
    UNIT_OK(strcmp(parse("a=%4g", MAX_FIELDS), "!") == 0, "% and a non-hex");
    UNIT_OK(strcmp(parse("a=%zz&b=1", MAX_FIELDS), "!") == 0,
            "a bad escape before a good field");
    UNIT_OK(strcmp(parse("%=1", MAX_FIELDS), "!") == 0,
            "a bad escape in a name");
    UNIT_OK(strcmp(parse("=1", MAX_FIELDS), "!") == 0, "an empty name");
    UNIT_OK(strcmp(parse("a=1&=2", MAX_FIELDS), "!") == 0,
            "an empty name after a good field");
    UNIT_OK(strcmp(parse("a=%00", MAX_FIELDS), "!") == 0, "a NUL byte");
    UNIT_OK(strcmp(parse("a=1&b=2&c=3", 2), "!") == 0,
            "more fields than room");
    UNIT_OK(strcmp(parse("a=1&b=2", 2), "a=1;b=2;") == 0,
            "exactly as many fields as room");

    UNIT_OK(orbit_form_parse("a=1\0b=2", 7, buf, f, MAX_FIELDS, &n) == -1,
            "a raw NUL byte");

    (void) parse("To=%2B1&From=%2B2&To=%2B3", MAX_FIELDS);
    UNIT_OK(orbit_form_get(f, 3, "To") == &f[0], "get: the first of a name");
    UNIT_OK(orbit_form_get(f, 3, "Body") == NULL, "get: none");
}


static void
test_escape(void)
{
    char         out[256], *e;
    size_t       n, i;
    const char  *s;

    s = "Hello world +1 & ü=~._-";
    e = orbit_form_escape(out, s, strlen(s));
    *e = '\0';

    UNIT_OK(strcmp(out, "Hello+world+%2B1+%26+%C3%BC%3D~._-") == 0,
            "escape: space, plus, ampersand, UTF-8, '=' and the safe");
    UNIT_OK(orbit_form_escape_len(s, strlen(s)) == strlen(out),
            "escape_len matches");

    /* every byte but NUL, escaped then parsed */

    memcpy(out, "v=", 2);
    e = out + 2;

    for (i = 1; i < 128; i++) {
        char  c = (char) i;
        e = orbit_form_escape(e, &c, 1);
    }

    UNIT_OK(orbit_form_parse(out, e - out, buf, f, MAX_FIELDS, &n) == 0
            && n == 1 && f[0].value_len == 127, "round trip: 127 bytes");

    for (i = 1; i < 128 && f[0].value[i - 1] == (char) i; i++) {
        /* void */
    }

    UNIT_OK(i == 128, "round trip: each byte as it was");
}


static void
test_signature(void)
{
    char         sig[ORBIT_TWILIO_SIG_LEN + 1];
    size_t       n;
    const char  *url, *body;

    /* the documented vector: the params in another order than sorted */

    url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    body = "To=%2B18005551212&From=%2B12349013030&Digits=1234"
           "&CallSid=CA1234567890ABCDE&Caller=%2B12349013030";

    UNIT_OK(orbit_form_parse(body, strlen(body), buf, f, MAX_FIELDS, &n)
            == 0 && n == 5, "the vector's body parses");
    UNIT_OK(orbit_twilio_signature(sig, "12345", 5, url, strlen(url), f, n)
            == 0, "signature computed");
    UNIT_STR(sig, strlen(sig), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
             "the documented vector");
    UNIT_OK(strcmp(f[0].name, "CallSid") == 0
            && strcmp(f[4].name, "To") == 0, "the fields sorted by name");

    (void) orbit_twilio_signature(sig, "12346", 5, url, strlen(url), f, n);
    UNIT_OK(strcmp(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") != 0,
            "another token: another signature");

    url = "http://mycompany.com/myapp.php?foo=1&bar=2";
    (void) orbit_twilio_signature(sig, "12345", 5, url, strlen(url), f, n);
    UNIT_OK(strcmp(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") != 0,
            "another scheme: another signature");

    /* no params: HMAC of the URL alone (python: base64(hmac(b"12345",
     * b"https://mycompany.com/myapp.php?foo=1&bar=2", sha1))) */

    url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    UNIT_OK(orbit_twilio_signature(sig, "12345", 5, url, strlen(url), f, 0)
            == 0, "no fields: computed");
    UNIT_STR(sig, strlen(sig), "zYQTYrRWXE7LtzbG4PfP7/bkkGo=",
             "no fields: the URL alone");

    /* repeated names: sorted by value, whatever the body's order */

    {
        char  a[ORBIT_TWILIO_SIG_LEN + 1], b[ORBIT_TWILIO_SIG_LEN + 1];

        body = "m=2&a=x&m=1";
        (void) orbit_form_parse(body, strlen(body), buf, f, MAX_FIELDS, &n);
        (void) orbit_twilio_signature(a, "k", 1, "u", 1, f, n);
        UNIT_OK(strcmp(f[1].value, "1") == 0 && strcmp(f[2].value, "2") == 0,
                "repeated names sorted by value");

        body = "m=1&m=2&a=x";
        (void) orbit_form_parse(body, strlen(body), buf, f, MAX_FIELDS, &n);
        (void) orbit_twilio_signature(b, "k", 1, "u", 1, f, n);
        UNIT_OK(strcmp(a, b) == 0, "... the same signature either order");

        /* "ab"+"c" against "a"+"bc": the same bytes, but sorted apart */
        body = "a=bc";
        (void) orbit_form_parse(body, strlen(body), buf, f, MAX_FIELDS, &n);
        (void) orbit_twilio_signature(a, "k", 1, "u", 1, f, n);
        body = "ab=c";
        (void) orbit_form_parse(body, strlen(body), buf, f, MAX_FIELDS, &n);
        (void) orbit_twilio_signature(b, "k", 1, "u", 1, f, n);
        UNIT_OK(strcmp(a, b) == 0,
                "no separators: a=bc and ab=c sign alike (as Twilio's do)");
    }
}


int
main(void)
{
    test_parse();
    test_escape();
    test_signature();

    return unit_done();
}
