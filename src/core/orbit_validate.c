/*
 * OrbitDesk core: request body validation (messages worded as the seed's
 * class-validator words them, so clients see the same text).
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "orbit_validate.h"


static void orbit_v_add(orbit_v_errors_t *errs, const char *fmt,
    const char *name, size_t n);
static const orbit_v_field_t *orbit_v_find(const orbit_v_field_t *fields,
    const char *name);
static void orbit_v_check(json_t *v, const orbit_v_field_t *f,
    orbit_v_errors_t *errs);
static void orbit_v_check_string(const char *s, size_t len,
    const orbit_v_field_t *f, orbit_v_errors_t *errs);


size_t
orbit_validate(json_t *body, const orbit_v_field_t *fields,
    orbit_v_errors_t *errs)
{
    json_t                 *v;
    const char             *key;
    const orbit_v_field_t  *f;

    errs->n = 0;

    if (body != NULL && !json_is_object(body)) {
        orbit_v_add(errs, "the body must be a JSON object", NULL, 0);
        return errs->n;
    }

    if (body) {
        json_object_foreach(body, key, v) {
            if (orbit_v_find(fields, key) == NULL) {
                orbit_v_add(errs, "property %s should not exist", key, 0);
            }
        }
    }

    for (f = fields; f->name; f++) {
        v = body ? json_object_get(body, f->name) : NULL;

        if (v == NULL) {
            if (f->required) {
                orbit_v_add(errs, "%s should not be empty", f->name, 0);
            }

            continue;
        }

        if (json_is_null(v)) {
            if (!f->nullable) {
                orbit_v_add(errs, f->required ? "%s should not be empty"
                                              : "%s should not be null",
                            f->name, 0);
            }

            continue;
        }

        orbit_v_check(v, f, errs);
    }

    return errs->n;
}


static void
orbit_v_check(json_t *v, const orbit_v_field_t *f, orbit_v_errors_t *errs)
{
    size_t   i, n;
    json_t  *item;

    switch (f->type) {

    case ORBIT_V_STRING:
    case ORBIT_V_DATETIME:
        if (!json_is_string(v)) {
            orbit_v_add(errs, "%s must be a string", f->name, 0);
            return;
        }

        if (f->type == ORBIT_V_DATETIME) {
            if (!orbit_valid_datetime(json_string_value(v),
                                      json_string_length(v)))
            {
                orbit_v_add(errs, "%s must be a valid ISO 8601 date string",
                            f->name, 0);
            }

            return;
        }

        orbit_v_check_string(json_string_value(v), json_string_length(v), f,
                             errs);
        return;

    case ORBIT_V_BOOL:
        if (!json_is_boolean(v)) {
            orbit_v_add(errs, "%s must be a boolean value", f->name, 0);
        }

        return;

    case ORBIT_V_INT:
        if (!json_is_integer(v)) {
            orbit_v_add(errs, "%s must be an integer number", f->name, 0);
            return;
        }

        if (json_integer_value(v) < (json_int_t) f->min) {
            orbit_v_add(errs, "%s must not be less than %zu", f->name,
                        f->min);

        } else if (f->max && json_integer_value(v) > (json_int_t) f->max) {
            orbit_v_add(errs, "%s must not be greater than %zu", f->name,
                        f->max);
        }

        return;

    case ORBIT_V_OBJECT:
        if (!json_is_object(v)) {
            orbit_v_add(errs, "%s must be an object", f->name, 0);

        } else if (f->max && json_object_size(v) > f->max) {
            orbit_v_add(errs, "%s must have at most %zu keys", f->name,
                        f->max);
        }

        return;

    case ORBIT_V_STRINGS:
        if (!json_is_array(v)) {
            orbit_v_add(errs, "%s must be an array", f->name, 0);
            return;
        }

        n = json_array_size(v);

        if (n < f->min) {
            orbit_v_add(errs, "%s must contain at least %zu elements",
                        f->name, f->min);
            return;
        }

        json_array_foreach(v, i, item) {
            if (!json_is_string(item)) {
                orbit_v_add(errs, "each value in %s must be a string",
                            f->name, 0);
                return;
            }
        }

        /* per item: the same length and format rules as a string */
        json_array_foreach(v, i, item) {
            orbit_v_check_string(json_string_value(item),
                                 json_string_length(item), f, errs);
        }

        return;
    }
}


static void
orbit_v_check_string(const char *s, size_t len, const orbit_v_field_t *f,
    orbit_v_errors_t *errs)
{
    size_t              i;
    const char *const  *o;

    if (!orbit_valid_utf8(s, len) || memchr(s, '\0', len) != NULL) {
        orbit_v_add(errs, "%s must be valid UTF-8 text", f->name, 0);
        return;
    }

    if (f->type == ORBIT_V_STRING && f->required && len == 0) {
        orbit_v_add(errs, "%s should not be empty", f->name, 0);
        return;
    }

    if (f->type == ORBIT_V_STRING && len < f->min) {
        orbit_v_add(errs, "%s must be longer than or equal to %zu characters",
                    f->name, f->min);
        return;
    }

    if (f->max && len > f->max) {
        orbit_v_add(errs, "%s must be shorter than or equal to %zu "
                    "characters", f->name, f->max);
        return;
    }

    if (f->one_of) {
        for (o = f->one_of; *o; o++) {
            if (strlen(*o) == len && memcmp(*o, s, len) == 0) {
                break;
            }
        }

        if (*o == NULL) {
            orbit_v_add(errs, "%s must be one of the allowed values",
                        f->name, 0);
        }

        return;
    }

    switch (f->format) {

    case ORBIT_V_EMAIL:
        if (!orbit_valid_email(s, len)) {
            orbit_v_add(errs, "%s must be an email", f->name, 0);
        }
        break;

    case ORBIT_V_E164:
        if (!orbit_valid_e164(s, len)) {
            orbit_v_add(errs, "%s must be E.164 (+ and 8 to 15 digits)",
                        f->name, 0);
        }
        break;

    case ORBIT_V_UUID:
        if (!orbit_valid_uuid(s, len)) {
            orbit_v_add(errs, "%s must be a UUID", f->name, 0);
        }
        break;

    case ORBIT_V_SLUG:
        if (!orbit_valid_slug(s, len)) {
            orbit_v_add(errs, "%s must be lowercase letters, digits and "
                        "dashes", f->name, 0);
        }
        break;

    case ORBIT_V_URL:
        if (!((len > 8 && strncmp(s, "https://", 8) == 0)
              || (len > 7 && strncmp(s, "http://", 7) == 0)))
        {
            orbit_v_add(errs, "%s must be a URL address", f->name, 0);
        }

        for (i = 0; i < len; i++) {
            if ((unsigned char) s[i] <= ' ') {
                orbit_v_add(errs, "%s must be a URL address", f->name, 0);
                break;
            }
        }
        break;

    default:
        break;
    }
}


void
orbit_validate_add(orbit_v_errors_t *errs, const char *message)
{
    orbit_v_add(errs, message, NULL, 0);
}


size_t
orbit_utf8_chars(const char *s, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (((unsigned char) s[i] & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
}


int
orbit_valid_email(const char *s, size_t len)
{
    size_t       i, at, dot;
    const char  *p;

    /* local@domain.tld, printable ASCII, one '@', a dot in the domain */

    if (len < 3 || len > 254) {
        return 0;
    }

    p = memchr(s, '@', len);
    if (p == NULL || p == s || memchr(p + 1, '@', len - (p - s) - 1)) {
        return 0;
    }

    at = (size_t) (p - s);
    dot = 0;

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f
            || s[i] == ',' || s[i] == ';' || s[i] == '<' || s[i] == '>'
            || s[i] == '"' || s[i] == '\\')
        {
            return 0;
        }

        if (i > at && s[i] == '.') {
            if (i == at + 1 || i == len - 1 || s[i - 1] == '.') {
                return 0;
            }

            dot = i;
        }
    }

    return dot != 0 && at <= 64;
}


int
orbit_valid_e164(const char *s, size_t len)
{
    size_t  i;

    /* "+" then 8 to 15 digits, the first not 0 (ITU-T E.164) */

    if (len < 9 || len > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') {
        return 0;
    }

    for (i = 2; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return 1;
}


int
orbit_valid_uuid(const char *s, size_t len)
{
    size_t  i;

    if (len != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }

        } else if (!((s[i] >= '0' && s[i] <= '9')
                     || (s[i] >= 'a' && s[i] <= 'f')
                     || (s[i] >= 'A' && s[i] <= 'F')))
        {
            return 0;
        }
    }

    return 1;
}


int
orbit_valid_slug(const char *s, size_t len)
{
    size_t  i;

    if (len < 1 || len > 63 || s[0] == '-') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


int
orbit_valid_datetime(const char *s, size_t len)
{
    size_t  i;

    /*
     * YYYY-MM-DD, optionally THH:MM[:SS[.fff]] and Z or +HH:MM: the shape
     * only; PostgreSQL's timestamptz input is the final judge.
     */

    static const char  shape[] = "dddd-dd-dd";

    if (len < 10 || len > 40) {
        return 0;
    }

    for (i = 0; i < 10; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != '-') {
            return 0;
        }
    }

    if (len == 10) {
        return 1;
    }

    if (s[10] != 'T' && s[10] != ' ') {
        return 0;
    }

    for (i = 11; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == ':' || s[i] == '.'
              || s[i] == 'Z' || s[i] == '+' || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


int
orbit_valid_utf8(const char *str, size_t len)
{
    size_t                i, k, n;
    uint32_t              cp, min;
    const unsigned char  *s;

    s = (const unsigned char *) str;
    i = 0;

    while (i < len) {

        if (s[i] < 0x80) {
            i++;
            continue;
        }

        if (s[i] >= 0xc2 && s[i] <= 0xdf) {
            n = 1;
            min = 0x80;
            cp = s[i] & 0x1f;

        } else if (s[i] >= 0xe0 && s[i] <= 0xef) {
            n = 2;
            min = 0x800;
            cp = s[i] & 0x0f;

        } else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
            n = 3;
            min = 0x10000;
            cp = s[i] & 0x07;

        } else {
            return 0;
        }

        if (len - i <= n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        /* overlong forms, surrogates, beyond U+10FFFF */
        if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
            return 0;
        }

        i += n + 1;
    }

    return 1;
}


static void
orbit_v_add(orbit_v_errors_t *errs, const char *fmt, const char *name,
    size_t n)
{
    if (errs->n == ORBIT_V_MAX_MESSAGES) {
        return;
    }

    if (name) {
        snprintf(errs->messages[errs->n], sizeof(errs->messages[0]), fmt,
                 name, n);

    } else {
        snprintf(errs->messages[errs->n], sizeof(errs->messages[0]), "%s",
                 fmt);
    }

    errs->n++;
}


static const orbit_v_field_t *
orbit_v_find(const orbit_v_field_t *fields, const char *name)
{
    const orbit_v_field_t  *f;

    for (f = fields; f->name; f++) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }

    return NULL;
}
