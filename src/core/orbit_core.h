/*
 * OrbitDesk core: nginx-independent helpers (plain C99, no nginx headers),
 * unit-tested alone under t/unit.
 */

#ifndef _ORBIT_CORE_H_INCLUDED_
#define _ORBIT_CORE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* json: the length of s escaped as a JSON string body (no quotes) */
size_t orbit_json_escaped_len(const char *s, size_t len);

/* writes the escaped form of s at dst; returns the end */
char *orbit_json_escape(char *dst, const char *s, size_t len);


/* error: the seed's (NestJS) error shape */
const char *orbit_http_reason(int status);

/*
 * {"statusCode":404,"message":"...","error":"Not Found"}, or, for a list
 * (validation messages: list set, or n > 1), "message":["...","..."].
 * Writes at most size bytes; returns the length the whole body needs.
 */
size_t orbit_error_json(char *buf, size_t size, int status,
    const char *const *messages, size_t n, int list);


/* route: method + path pattern ("/api/v1/contacts/:id") -> handler */

#define ORBIT_ROUTE_MAX_PARAMS  4

typedef struct {
    const char   *method;
    const char   *pattern;
    void         *handler;
    unsigned      access;       /* the caller's meaning: who may call */
} orbit_route_t;

typedef struct {
    const char   *data;
    size_t        len;
} orbit_slice_t;

typedef struct {
    const orbit_route_t  *route;
    orbit_slice_t         params[ORBIT_ROUTE_MAX_PARAMS];
    size_t                nparams;
} orbit_route_match_t;

typedef enum {
    ORBIT_ROUTE_FOUND = 0,
    ORBIT_ROUTE_NOT_FOUND,
    ORBIT_ROUTE_BAD_METHOD
} orbit_route_rc_e;

orbit_route_rc_e orbit_route_find(const orbit_route_t *routes, size_t n,
    const char *method, size_t method_len, const char *path, size_t path_len,
    orbit_route_match_t *m);

/* "GET, POST" for the routes whose pattern matches path; returns length */
size_t orbit_route_allow(const orbit_route_t *routes, size_t n,
    const char *path, size_t path_len, char *buf, size_t size);


/* crypto: hashes in lowercase hex, timing-safe comparison, tokens */

#define ORBIT_SHA256_HEX_LEN  64

/* 2 * len lowercase hex digits and a nul */
void orbit_hex(char *dst, const unsigned char *src, size_t len);

/* len hex digits (either case) -> len / 2 bytes; 0, or -1 */
int orbit_unhex(unsigned char *dst, const char *src, size_t len);

void orbit_sha256_hex(char out[ORBIT_SHA256_HEX_LEN + 1], const void *data,
    size_t len);
int orbit_hmac_sha256_hex(char out[ORBIT_SHA256_HEX_LEN + 1],
    const void *key, size_t key_len, const void *data, size_t len);

/* 1 when equal; the time taken does not depend on where they differ */
int orbit_equal(const void *a, size_t alen, const void *b, size_t blen);

/* nbytes (at most 64) random bytes, base64url, nul-terminated in out */
#define ORBIT_TOKEN_LEN(nbytes)  (((nbytes) * 4 + 2) / 3)
int orbit_random_token(char *out, size_t nbytes);

/* a random (version 4) UUID, lowercase, nul-terminated */
#define ORBIT_UUID_LEN  36
int orbit_random_uuid(char out[ORBIT_UUID_LEN + 1]);


/* jwt: HS256 access tokens */

typedef struct {
    char         user_id[48];
    char         tenant_id[48];                /* "" for SUPERADMIN */
    char         role[16];
    char         account[64];                  /* a VISITOR's widget, or "" */
    long         iat;
    long         exp;
} orbit_jwt_claims_t;

typedef enum {
    ORBIT_JWT_OK = 0,
    ORBIT_JWT_INVALID,
    ORBIT_JWT_EXPIRED
} orbit_jwt_rc_e;

/* a new token (free it with orbit_jwt_free), or NULL */
char *orbit_jwt_sign(const unsigned char *key, size_t key_len,
    const orbit_jwt_claims_t *c);
void orbit_jwt_free(char *token);
orbit_jwt_rc_e orbit_jwt_verify(const unsigned char *key, size_t key_len,
    const char *token, long now, orbit_jwt_claims_t *c);


/* secrets: the file named by orbit_secrets */

#define ORBIT_SECRET_MAX  256

typedef struct {
    char           jwt_secret[ORBIT_SECRET_MAX];
    size_t         jwt_secret_len;
    unsigned char  encryption_key[32];

    /* optional: "" when not configured */
    char           meta_app_secret[ORBIT_SECRET_MAX];
    char           meta_verify_token[ORBIT_SECRET_MAX];
    char           s3_access_key_id[ORBIT_SECRET_MAX];
    char           s3_secret_access_key[ORBIT_SECRET_MAX];

    unsigned       has_encryption_key:1;
} orbit_secrets_t;

int orbit_secrets_parse(const char *text, size_t len, orbit_secrets_t *s,
    char *err, size_t errlen);


/* password: argon2id in the PHC encoded form ("$argon2id$v=19$...") */

#define ORBIT_PASSWORD_ENCODED_LEN  128

int orbit_password_hash(const char *password, size_t len, char *out,
    size_t size);

/* 1 when password matches encoded, else 0 */
int orbit_password_verify(const char *encoded, const char *password,
    size_t len);


#endif /* _ORBIT_CORE_H_INCLUDED_ */
