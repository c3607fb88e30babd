/*
 * OrbitDesk core: JSON string escaping for the bodies C writes itself
 * (errors, health); everything larger is built by PostgreSQL or jansson.
 */

#include "orbit_core.h"


static const char  orbit_json_hex[] = "0123456789abcdef";


size_t
orbit_json_escaped_len(const char *s, size_t len)
{
    size_t          n;
    unsigned char   ch;

    n = 0;

    while (len--) {
        ch = (unsigned char) *s++;

        if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r'
            || ch == '\t' || ch == '\b' || ch == '\f')
        {
            n += 2;

        } else if (ch < 0x20 || ch == 0x7f) {
            n += 6;

        } else {
            n++;
        }
    }

    return n;
}


char *
orbit_json_escape(char *dst, const char *s, size_t len)
{
    unsigned char  ch;

    while (len--) {
        ch = (unsigned char) *s++;

        switch (ch) {
        case '"':  *dst++ = '\\'; *dst++ = '"';  break;
        case '\\': *dst++ = '\\'; *dst++ = '\\'; break;
        case '\n': *dst++ = '\\'; *dst++ = 'n';  break;
        case '\r': *dst++ = '\\'; *dst++ = 'r';  break;
        case '\t': *dst++ = '\\'; *dst++ = 't';  break;
        case '\b': *dst++ = '\\'; *dst++ = 'b';  break;
        case '\f': *dst++ = '\\'; *dst++ = 'f';  break;

        default:
            if (ch < 0x20 || ch == 0x7f) {
                *dst++ = '\\';
                *dst++ = 'u';
                *dst++ = '0';
                *dst++ = '0';
                *dst++ = orbit_json_hex[ch >> 4];
                *dst++ = orbit_json_hex[ch & 0xf];

            } else {
                *dst++ = (char) ch;
            }
        }
    }

    return dst;
}
