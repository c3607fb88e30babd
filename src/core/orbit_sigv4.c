/*
 * OrbitDesk core: AWS Signature Version 4 (see orbit_sigv4.h).
 *
 *   canonical request = METHOD \n path \n query \n headers \n
 *                       signed headers \n payload hash
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz_date \n
 *                       date/region/service/aws4_request \n
 *                       hex(sha256(canonical request))
 *   key               = HMAC chain "AWS4" + secret -> date -> region ->
 *                       service -> "aws4_request"
 */

#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "orbit_core.h"
#include "orbit_sigv4.h"


#define ORBIT_SIGV4_MAX  4096


static int orbit_sigv4_hmac(unsigned char out[32], const void *key,
    size_t klen, const char *data);
static int orbit_sigv4_scope(const orbit_sigv4_t *s, char *out,
    size_t size);


int
orbit_sigv4_signature(const orbit_sigv4_t *s, const char *query,
    const char *headers, const char *signed_headers, const char *payload,
    char out[65])
{
    int            n;
    char           hash[ORBIT_SHA256_HEX_LEN + 1], scope[256];
    char           canonical[ORBIT_SIGV4_MAX], sts[512], kbuf[300];
    unsigned char  k[32], sig[32];

    n = snprintf(canonical, sizeof(canonical), "%s\n%s\n%s\n%s\n%s\n%s",
                 s->method, s->path, query, headers, signed_headers,
                 payload);

    if (n < 0 || (size_t) n >= sizeof(canonical)
        || orbit_sigv4_scope(s, scope, sizeof(scope)) != 0)
    {
        return -1;
    }

    orbit_sha256_hex(hash, canonical, n);

    n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s",
                 s->amz_date, scope, hash);
    if (n < 0 || (size_t) n >= sizeof(sts)) {
        return -1;
    }

    n = snprintf(kbuf, sizeof(kbuf), "AWS4%s", s->secret_key);
    if (n < 0 || (size_t) n >= sizeof(kbuf) || strlen(s->amz_date) < 8) {
        return -1;
    }

    /* the date part of amz_date: YYYYMMDD */

    memcpy(scope, s->amz_date, 8);
    scope[8] = '\0';

    if (orbit_sigv4_hmac(k, kbuf, n, scope) != 0
        || orbit_sigv4_hmac(k, k, 32, s->region) != 0
        || orbit_sigv4_hmac(k, k, 32, s->service) != 0
        || orbit_sigv4_hmac(k, k, 32, "aws4_request") != 0
        || orbit_sigv4_hmac(sig, k, 32, sts) != 0)
    {
        return -1;
    }

    orbit_hex(out, sig, 32);

    return 0;
}


int
orbit_sigv4_authorization(const orbit_sigv4_t *s, const char *payload,
    const char *content_type, char *out, size_t size)
{
    int          n;
    char         headers[1024], scope[256], sig[65];
    const char  *signed_headers;

    if (content_type) {
        n = snprintf(headers, sizeof(headers), "content-type:%s\nhost:%s\n"
                     "x-amz-content-sha256:%s\nx-amz-date:%s\n",
                     content_type, s->host, payload, s->amz_date);
        signed_headers = "content-type;host;x-amz-content-sha256;x-amz-date";

    } else {
        n = snprintf(headers, sizeof(headers), "host:%s\n"
                     "x-amz-content-sha256:%s\nx-amz-date:%s\n",
                     s->host, payload, s->amz_date);
        signed_headers = "host;x-amz-content-sha256;x-amz-date";
    }

    if (n < 0 || (size_t) n >= sizeof(headers)
        || orbit_sigv4_signature(s, "", headers, signed_headers, payload,
                                 sig) != 0
        || orbit_sigv4_scope(s, scope, sizeof(scope)) != 0)
    {
        return -1;
    }

    n = snprintf(out, size, "AWS4-HMAC-SHA256 Credential=%s/%s, "
                 "SignedHeaders=%s, Signature=%s", s->access_key, scope,
                 signed_headers, sig);

    return (n < 0 || (size_t) n >= size) ? -1 : 0;
}


int
orbit_sigv4_presign(const orbit_sigv4_t *s, long expires, char *out,
    size_t size)
{
    int     n;
    char    cred[512], scope[256], enc[1024], headers[600], sig[65];
    size_t  len;

    if (orbit_sigv4_scope(s, scope, sizeof(scope)) != 0) {
        return -1;
    }

    n = snprintf(cred, sizeof(cred), "%s/%s", s->access_key, scope);
    if (n < 0 || (size_t) n >= sizeof(cred)) {
        return -1;
    }

    len = orbit_sigv4_encode(cred, n, 0, enc, sizeof(enc));
    if (len == (size_t) -1) {
        return -1;
    }

    /* the parameters in their sorted order: the canonical query itself */

    n = snprintf(out, size, "X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 "&X-Amz-Credential=%s&X-Amz-Date=%s&X-Amz-Expires=%ld"
                 "&X-Amz-SignedHeaders=host", enc, s->amz_date, expires);
    if (n < 0 || (size_t) n >= size) {
        return -1;
    }

    len = n;

    n = snprintf(headers, sizeof(headers), "host:%s\n", s->host);
    if (n < 0 || (size_t) n >= sizeof(headers)
        || orbit_sigv4_signature(s, out, headers, "host", "UNSIGNED-PAYLOAD",
                                 sig) != 0)
    {
        return -1;
    }

    n = snprintf(out + len, size - len, "&X-Amz-Signature=%s", sig);

    return (n < 0 || (size_t) n >= size - len) ? -1 : 0;
}


size_t
orbit_sigv4_encode(const char *src, size_t len, int path, char *out,
    size_t size)
{
    size_t          i, n;
    unsigned char   c;

    static const char  hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~' || (path && c == '/'))
        {
            if (n + 1 >= size) {
                return (size_t) -1;
            }

            out[n++] = (char) c;
            continue;
        }

        if (n + 3 >= size) {
            return (size_t) -1;
        }

        out[n++] = '%';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 0xf];
    }

    if (n >= size) {
        return (size_t) -1;
    }

    out[n] = '\0';

    return n;
}


static int
orbit_sigv4_hmac(unsigned char out[32], const void *key, size_t klen,
    const char *data)
{
    unsigned int   n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (HMAC(EVP_sha256(), key, (int) klen, (const unsigned char *) data,
             strlen(data), md, &n) == NULL
        || n != 32)
    {
        return -1;
    }

    memcpy(out, md, 32);

    return 0;
}


/* date/region/service/aws4_request */

static int
orbit_sigv4_scope(const orbit_sigv4_t *s, char *out, size_t size)
{
    int  n;

    if (strlen(s->amz_date) < 8) {
        return -1;
    }

    n = snprintf(out, size, "%.8s/%s/%s/aws4_request", s->amz_date,
                 s->region, s->service);

    return (n < 0 || (size_t) n >= size) ? -1 : 0;
}
