/*
 * OrbitDesk core: request body validation, the way the seed's NestJS
 * ValidationPipe does it in whitelist mode: every field checked against a
 * table, every problem reported (one message per problem, naming the
 * field), and any property not in the table refused.
 */

#ifndef _ORBIT_VALIDATE_H_INCLUDED_
#define _ORBIT_VALIDATE_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


typedef enum {
    ORBIT_V_STRING = 1,
    ORBIT_V_BOOL,
    ORBIT_V_INT,
    ORBIT_V_OBJECT,
    ORBIT_V_STRINGS,             /* an array of strings */
    ORBIT_V_DATETIME             /* an ISO 8601 string, or null */
} orbit_v_type_e;


typedef enum {
    ORBIT_V_ANY = 0,
    ORBIT_V_EMAIL,
    ORBIT_V_E164,
    ORBIT_V_UUID,
    ORBIT_V_SLUG,
    ORBIT_V_URL
} orbit_v_format_e;


typedef struct {
    const char          *name;
    orbit_v_type_e       type;
    unsigned             required:1;
    unsigned             nullable:1;
    orbit_v_format_e     format;
    size_t               min;          /* length (strings), items, value */
    size_t               max;          /* 0: no maximum */
    const char *const   *one_of;       /* NULL-terminated, strings only */
} orbit_v_field_t;


#define ORBIT_V_MAX_MESSAGES  16

typedef struct {
    char                 messages[ORBIT_V_MAX_MESSAGES][128];
    size_t               n;
} orbit_v_errors_t;


/*
 * Checks body (a JSON object, or NULL for no body) against fields (ended
 * by a NULL name).  Returns 0 when valid, else the number of messages
 * collected in errs (at most ORBIT_V_MAX_MESSAGES).
 */
size_t orbit_validate(json_t *body, const orbit_v_field_t *fields,
    orbit_v_errors_t *errs);

/* appends a message of the caller's own checks (if there is room) */
void orbit_validate_add(orbit_v_errors_t *errs, const char *message);

/* the characters of valid UTF-8 text: its bytes that are not 10xxxxxx */
size_t orbit_utf8_chars(const char *s, size_t len);

int orbit_valid_email(const char *s, size_t len);
int orbit_valid_e164(const char *s, size_t len);
int orbit_valid_uuid(const char *s, size_t len);
int orbit_valid_slug(const char *s, size_t len);
int orbit_valid_datetime(const char *s, size_t len);
int orbit_valid_utf8(const char *s, size_t len);


#endif /* _ORBIT_VALIDATE_H_INCLUDED_ */
