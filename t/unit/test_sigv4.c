/*
 * Unit tests of src/core/orbit_sigv4.c against the examples of Amazon's
 * S3 documentation ("Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk", and "Authenticating Requests:
 * Using Query Parameters"): the same access key, secret, date and region,
 * and the signatures printed there; then the forms we send.
 */

#include "unit.h"
#include "core/orbit_core.h"
#include "core/orbit_sigv4.h"


#define AK     "AKIAIOSFODNN7EXAMPLE"
#define SK     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define HOST   "examplebucket.s3.amazonaws.com"
#define DATE   "20130524T000000Z"
#define EMPTY  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b" \
               "7852b855"
#define PUTSHA "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b8" \
               "03f8b072"


static orbit_sigv4_t
example(const char *method, const char *path)
{
    orbit_sigv4_t  s;

    s.method = method;
    s.host = HOST;
    s.path = path;
    s.region = "us-east-1";
    s.service = "s3";
    s.access_key = AK;
    s.secret_key = SK;
    s.amz_date = DATE;

    return s;
}


static void
test_documented(void)
{
    char           sig[65], payload[65], enc[64], q[1024];
    size_t         n;
    const char    *p;
    orbit_sigv4_t  s;

    /* GET Object, with a Range header */

    s = example("GET", "/test.txt");
    UNIT_OK(orbit_sigv4_signature(&s, "",
                "host:" HOST "\nrange:bytes=0-9\n"
                "x-amz-content-sha256:" EMPTY "\nx-amz-date:" DATE "\n",
                "host;range;x-amz-content-sha256;x-amz-date", EMPTY, sig)
            == 0, "GET Object: signed");
    UNIT_STR(sig, strlen(sig), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170"
             "aba48dd91039c6036bdb41", "GET Object: the documented signature");

    /* PUT Object: "Welcome to Amazon S3." to /test$file.text */

    n = orbit_sigv4_encode("/test$file.text", 15, 1, enc, sizeof(enc));
    UNIT_STR(enc, n, "/test%24file.text", "a path encoded, its / kept");

    orbit_sha256_hex(payload, "Welcome to Amazon S3.", 21);
    UNIT_STR(payload, strlen(payload), PUTSHA, "PUT Object: the payload hash");

    s = example("PUT", enc);
    UNIT_OK(orbit_sigv4_signature(&s, "",
                "date:Fri, 24 May 2013 00:00:00 GMT\nhost:" HOST "\n"
                "x-amz-content-sha256:" PUTSHA "\nx-amz-date:" DATE "\n"
                "x-amz-storage-class:REDUCED_REDUNDANCY\n",
                "date;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-storage-class", PUTSHA, sig) == 0,
            "PUT Object: signed");
    UNIT_STR(sig, strlen(sig), "98ad721746da40c64f1a55b78f14c238d841ea1380"
             "cd77a1b5971af0ece108bd", "PUT Object: the documented signature");

    /* GET Bucket lifecycle: a query, our three signed headers */

    s = example("GET", "/");
    UNIT_OK(orbit_sigv4_signature(&s, "lifecycle=",
                "host:" HOST "\nx-amz-content-sha256:" EMPTY "\n"
                "x-amz-date:" DATE "\n",
                "host;x-amz-content-sha256;x-amz-date", EMPTY, sig) == 0,
            "GET lifecycle: signed");
    UNIT_STR(sig, strlen(sig), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e"
             "0f91ac7a200a0136783543",
             "GET lifecycle: the documented signature");

    /* a presigned URL, 86400 s */

    s = example("GET", "/test.txt");
    UNIT_OK(orbit_sigv4_presign(&s, 86400, q, sizeof(q)) == 0, "presigned");
    UNIT_STR(q, strlen(q), "X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1"
             "%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
             "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
             "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c"
             "265957d157751f604d404", "presigned: the documented URL's query");

    UNIT_OK(orbit_sigv4_presign(&s, 86400, q, 100) == -1,
            "presign: too small a buffer refused");

    /* the Authorization header we send: our signature in AWS's format */

    s = example("PUT", enc);
    UNIT_OK(orbit_sigv4_signature(&s, "",
                "content-type:text/plain\nhost:" HOST "\n"
                "x-amz-content-sha256:" PUTSHA "\nx-amz-date:" DATE "\n",
                "content-type;host;x-amz-content-sha256;x-amz-date", PUTSHA,
                sig) == 0, "a PUT with a content type: signed");
    UNIT_OK(orbit_sigv4_authorization(&s, PUTSHA, "text/plain", q, sizeof(q))
            == 0, "its Authorization header");

    p = "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/"
        "aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;"
        "x-amz-date, Signature=";
    UNIT_OK(strncmp(q, p, strlen(p)) == 0 && strcmp(q + strlen(p), sig) == 0,
            "... names the credential scope, the headers, the signature");
    UNIT_OK(orbit_sigv4_authorization(&s, PUTSHA, NULL, q, 40) == -1,
            "authorization: too small a buffer refused");

    /* encoding */

    n = orbit_sigv4_encode("a b+c/é~", 9, 0, enc, sizeof(enc));
    UNIT_STR(enc, n, "a%20b%2Bc%2F%C3%A9~", "a query value encoded");
    UNIT_OK(orbit_sigv4_encode("abcdef", 6, 0, enc, 6) == (size_t) -1,
            "encode: no room for the nul: refused");
    UNIT_OK(orbit_sigv4_encode("%%", 2, 0, enc, 6) == (size_t) -1,
            "encode: no room for an escape: refused");
}


int
main(void)
{
    test_documented();

    return unit_done();
}
