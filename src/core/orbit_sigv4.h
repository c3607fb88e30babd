/*
 * OrbitDesk core: AWS Signature Version 4, for S3-compatible media
 * storage (AWS S3, MinIO, Ceph, R2...): a request signed in its
 * Authorization header, and a presigned GET URL.  nginx-independent.
 *
 * The caller gives paths already URI-encoded the AWS way
 * (orbit_sigv4_encode: everything but A-Z a-z 0-9 - _ . ~ as %XX, "/"
 * kept in paths).
 */

#ifndef _ORBIT_SIGV4_H_INCLUDED_
#define _ORBIT_SIGV4_H_INCLUDED_


#include <stddef.h>


typedef struct {
    const char  *method;       /* "PUT", "GET" */
    const char  *host;         /* the Host header: host[:port] */
    const char  *path;         /* encoded, "/bucket/key" or "/key" */
    const char  *region;       /* "us-east-1" */
    const char  *service;      /* "s3" */
    const char  *access_key;
    const char  *secret_key;
    const char  *amz_date;     /* "YYYYMMDDTHHMMSSZ" */
} orbit_sigv4_t;


/*
 * The hex signature of a request.  query: the canonical query string
 * (sorted, encoded), or "".  headers: the canonical headers, lowercase
 * names sorted, each "name:value\n"; signed: their names, ";"-joined;
 * payload: the hex SHA-256 of the body or "UNSIGNED-PAYLOAD".  0, or -1.
 */
int orbit_sigv4_signature(const orbit_sigv4_t *s, const char *query,
    const char *headers, const char *signed_headers, const char *payload,
    char out[65]);

/*
 * The Authorization header's value for a request whose signed headers
 * are host, x-amz-content-sha256 (= payload) and x-amz-date (= amz_date),
 * plus content-type when given (NULL: not signed).  0, or -1 when out is
 * too small.
 */
int orbit_sigv4_authorization(const orbit_sigv4_t *s, const char *payload,
    const char *content_type, char *out, size_t size);

/*
 * The query string (without "?") of a presigned URL of s->path, valid
 * for expires seconds from amz_date: host is its only signed header.  0,
 * or -1 when out is too small.
 */
int orbit_sigv4_presign(const orbit_sigv4_t *s, long expires, char *out,
    size_t size);

/*
 * src[0..len) encoded the AWS way into out (nul-terminated); "/" kept
 * when path is set.  The encoded length, or (size_t) -1 when out is too
 * small.
 */
size_t orbit_sigv4_encode(const char *src, size_t len, int path, char *out,
    size_t size);


#endif /* _ORBIT_SIGV4_H_INCLUDED_ */
