/*
 * OrbitDesk core: form-urlencoded bodies and Twilio's signature of them
 * (orbit_form.h).
 */

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "orbit_form.h"


static int orbit_form_hex(int c);
static char *orbit_form_decode(char *dst, const char *src, size_t len);
static int orbit_form_cmp_str(const char *a, size_t alen, const char *b,
    size_t blen);
static int orbit_form_cmp(const void *a, const void *b);


/* the value of a hex digit, or -1 */

static int
orbit_form_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* src decoded at dst and nul-terminated: the end (the nul), or NULL */

static char *
orbit_form_decode(char *dst, const char *src, size_t len)
{
    int          hi, lo;
    const char  *end;

    end = src + len;

    while (src < end) {
        if (*src == '+') {
            *dst++ = ' ';
            src++;
            continue;
        }

        if (*src != '%') {
            *dst++ = *src++;
            continue;
        }

        if (end - src < 3) {
            return NULL;
        }

        hi = orbit_form_hex((unsigned char) src[1]);
        lo = orbit_form_hex((unsigned char) src[2]);

        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return NULL;
        }

        *dst++ = (char) (hi << 4 | lo);
        src += 3;
    }

    *dst = '\0';

    return dst;
}


int
orbit_form_parse(const char *src, size_t len, char *buf,
    orbit_form_field_t *fields, size_t max, size_t *n)
{
    char        *p, *e;
    const char  *end, *part, *amp, *eq;

    *n = 0;
    p = buf;
    end = src + len;

    for (part = src; part < end; part = amp + 1) {
        amp = memchr(part, '&', end - part);
        if (amp == NULL) {
            amp = end;
        }

        if (amp == part) {
            continue;               /* "&&", a leading or trailing '&' */
        }

        if (memchr(part, '\0', amp - part) != NULL) {
            return -1;
        }

        eq = memchr(part, '=', amp - part);
        if (eq == NULL) {
            eq = amp;
        }

        if (eq == part || *n == max) {
            return -1;
        }

        fields[*n].name = p;

        e = orbit_form_decode(p, part, eq - part);
        if (e == NULL || e == p) {
            return -1;
        }

        fields[*n].name_len = e - p;
        p = e + 1;

        fields[*n].value = p;

        e = orbit_form_decode(p, eq == amp ? eq : eq + 1,
                              eq == amp ? 0 : (size_t) (amp - eq - 1));
        if (e == NULL) {
            return -1;
        }

        fields[*n].value_len = e - p;
        p = e + 1;

        (*n)++;
    }

    return 0;
}


const orbit_form_field_t *
orbit_form_get(const orbit_form_field_t *fields, size_t n, const char *name)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strcmp(fields[i].name, name) == 0) {
            return &fields[i];
        }
    }

    return NULL;
}


static const char  orbit_form_safe[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";


size_t
orbit_form_escape_len(const char *src, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        n += (src[i] != '\0' && strchr(orbit_form_safe, src[i]))
             || src[i] == ' ' ? 1 : 3;
    }

    return n;
}


char *
orbit_form_escape(char *dst, const char *src, size_t len)
{
    size_t          i;
    unsigned char   c;

    static const char  hex[] = "0123456789ABCDEF";

    for (i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if (c == ' ') {
            *dst++ = '+';

        } else if (c != '\0' && strchr(orbit_form_safe, c)) {
            *dst++ = (char) c;

        } else {
            *dst++ = '%';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0x0f];
        }
    }

    return dst;
}


/* byte order, a prefix first */

static int
orbit_form_cmp_str(const char *a, size_t alen, const char *b, size_t blen)
{
    int  rc;

    rc = memcmp(a, b, alen < blen ? alen : blen);

    if (rc != 0) {
        return rc;
    }

    return (alen > blen) - (alen < blen);
}


static int
orbit_form_cmp(const void *a, const void *b)
{
    int                        rc;
    const orbit_form_field_t  *fa = a, *fb = b;

    rc = orbit_form_cmp_str(fa->name, fa->name_len, fb->name, fb->name_len);

    if (rc != 0) {
        return rc;
    }

    return orbit_form_cmp_str(fa->value, fa->value_len, fb->value,
                              fb->value_len);
}


int
orbit_twilio_signature(char out[ORBIT_TWILIO_SIG_LEN + 1],
    const char *token, size_t token_len, const char *url, size_t url_len,
    orbit_form_field_t *fields, size_t n)
{
    char           *data, *p;
    size_t          i, len;
    unsigned int    md_len;
    unsigned char   md[EVP_MAX_MD_SIZE];

    if (n > 1) {
        qsort(fields, n, sizeof(orbit_form_field_t), orbit_form_cmp);
    }

    len = url_len;

    for (i = 0; i < n; i++) {
        len += fields[i].name_len + fields[i].value_len;
    }

    data = malloc(len ? len : 1);
    if (data == NULL) {
        return -1;
    }

    memcpy(data, url, url_len);
    p = data + url_len;

    for (i = 0; i < n; i++) {
        memcpy(p, fields[i].name, fields[i].name_len);
        p += fields[i].name_len;
        memcpy(p, fields[i].value, fields[i].value_len);
        p += fields[i].value_len;
    }

    if (HMAC(EVP_sha1(), token, (int) token_len, (unsigned char *) data,
             len, md, &md_len)
        == NULL || md_len != 20)
    {
        free(data);
        return -1;
    }

    free(data);

    /* 20 bytes: 28 characters and a nul */
    (void) EVP_EncodeBlock((unsigned char *) out, md, (int) md_len);

    return 0;
}
