/*
 * OrbitDesk core: the error shape every client of the seed (NestJS) knows:
 * {"statusCode":400,"message":["phone must be E.164"],"error":"Bad Request"}
 */

#include <stdio.h>
#include <string.h>

#include "orbit_core.h"


typedef struct {
    int          status;
    const char  *reason;
} orbit_reason_t;


static const orbit_reason_t  orbit_reasons[] = {
    { 400, "Bad Request" },
    { 401, "Unauthorized" },
    { 402, "Payment Required" },
    { 403, "Forbidden" },
    { 404, "Not Found" },
    { 405, "Method Not Allowed" },
    { 406, "Not Acceptable" },
    { 408, "Request Timeout" },
    { 409, "Conflict" },
    { 410, "Gone" },
    { 411, "Length Required" },
    { 412, "Precondition Failed" },
    { 413, "Payload Too Large" },
    { 414, "URI Too Long" },
    { 415, "Unsupported Media Type" },
    { 416, "Range Not Satisfiable" },
    { 422, "Unprocessable Entity" },
    { 429, "Too Many Requests" },
    { 431, "Request Header Fields Too Large" },
    { 500, "Internal Server Error" },
    { 501, "Not Implemented" },
    { 502, "Bad Gateway" },
    { 503, "Service Unavailable" },
    { 504, "Gateway Timeout" },
    { 0, NULL }
};


const char *
orbit_http_reason(int status)
{
    const orbit_reason_t  *r;

    for (r = orbit_reasons; r->status; r++) {
        if (r->status == status) {
            return r->reason;
        }
    }

    return status >= 500 ? "Internal Server Error" : "Bad Request";
}


size_t
orbit_error_json(char *buf, size_t size, int status,
    const char *const *messages, size_t n, int list)
{
    char        *p, head[64];
    size_t       need, i, len;
    const char  *reason, *fallback[1];

    reason = orbit_http_reason(status);

    if (n == 0) {
        fallback[0] = reason;
        messages = fallback;
        n = 1;
    }

    list = list || n > 1;

    len = (size_t) snprintf(head, sizeof(head), "{\"statusCode\":%d", status);

    need = len + sizeof(",\"message\":") - 1 + (list ? 2 : 0)
           + sizeof(",\"error\":\"\"}") - 1 + strlen(reason);

    for (i = 0; i < n; i++) {
        need += 2 + orbit_json_escaped_len(messages[i], strlen(messages[i]))
                + (i ? 1 : 0);
    }

    if (need > size) {
        return need;
    }

    p = buf;
    memcpy(p, head, len);
    p += len;

    memcpy(p, ",\"message\":", sizeof(",\"message\":") - 1);
    p += sizeof(",\"message\":") - 1;

    if (list) {
        *p++ = '[';
    }

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '"';
        p = orbit_json_escape(p, messages[i], strlen(messages[i]));
        *p++ = '"';
    }

    if (list) {
        *p++ = ']';
    }

    memcpy(p, ",\"error\":\"", sizeof(",\"error\":\"") - 1);
    p += sizeof(",\"error\":\"") - 1;

    len = strlen(reason);
    memcpy(p, reason, len);
    p += len;

    *p++ = '"';
    *p++ = '}';

    return (size_t) (p - buf);
}
