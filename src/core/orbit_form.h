/*
 * OrbitDesk core: application/x-www-form-urlencoded bodies, and Twilio's
 * signature of them (../shared/PROTOCOLS.md section 4).
 *
 * Parsing.  "a=1&b=x+y&c=%2B1" is three fields; '+' is a space, %XX a
 * byte (either case of hex digits).  Empty parts ("a=1&&b=2", a trailing
 * '&') are skipped; a part without '=' is a name with an empty value.
 * Refused, as a malformed body: a '%' not followed by two hex digits, an
 * empty name, a decoded NUL byte (names and values are C strings), and
 * more fields than the caller has room for.  Names may repeat: each
 * occurrence is a field, in the body's order.  Nothing is checked to be
 * UTF-8: the caller does that where it keeps the text.
 *
 * Writing.  orbit_form_escape() writes a name or a value: the unreserved
 * characters of RFC 3986 (A-Z a-z 0-9 - . _ ~) as they are, space as '+',
 * every other byte as %XX (uppercase).
 *
 * Twilio.  X-Twilio-Signature is base64(HMAC-SHA1(auth token, the full
 * URL Twilio requested + each field's name and value, the fields sorted
 * by name)).  Repeated names: each value, in the order of their values
 * (byte order), as Twilio's helper libraries sort them.
 */

#ifndef _ORBIT_FORM_H_INCLUDED_
#define _ORBIT_FORM_H_INCLUDED_


#include "orbit_core.h"


/* base64 of a 20-byte HMAC-SHA1, without the nul */
#define ORBIT_TWILIO_SIG_LEN  28


typedef struct {
    const char          *name;         /* decoded, nul-terminated */
    size_t               name_len;
    const char          *value;
    size_t               value_len;
} orbit_form_field_t;


/* the size of the buffer orbit_form_parse() needs for len bytes */
#define ORBIT_FORM_BUF_SIZE(len)  (2 * (len) + 2)

/*
 * Parses src into at most max fields, their names and values decoded
 * into buf (ORBIT_FORM_BUF_SIZE(len) bytes); *n is the number of fields.
 * 0, or -1 when the body is malformed (*n then says nothing).
 */
int orbit_form_parse(const char *src, size_t len, char *buf,
    orbit_form_field_t *fields, size_t max, size_t *n);

/* the first field named name, or NULL */
const orbit_form_field_t *orbit_form_get(const orbit_form_field_t *fields,
    size_t n, const char *name);

/* the length orbit_form_escape() writes for src */
size_t orbit_form_escape_len(const char *src, size_t len);

/* writes src escaped at dst; returns the end */
char *orbit_form_escape(char *dst, const char *src, size_t len);

/*
 * The signature of a request to url with these fields (sorted in place),
 * nul-terminated in out.  0, or -1 when out of memory.
 */
int orbit_twilio_signature(char out[ORBIT_TWILIO_SIG_LEN + 1],
    const char *token, size_t token_len, const char *url, size_t url_len,
    orbit_form_field_t *fields, size_t n);


#endif /* _ORBIT_FORM_H_INCLUDED_ */
