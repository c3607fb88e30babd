/*
 * OrbitDesk core: the REST route table.  A pattern is a path whose
 * segments are literals or ":name" parameters; a path that matches a
 * pattern under another method is a 405, not a 404.
 */

#include <string.h>

#include "orbit_core.h"


static int orbit_route_match(const char *pattern, const char *path,
    size_t path_len, orbit_route_match_t *m);


orbit_route_rc_e
orbit_route_find(const orbit_route_t *routes, size_t n, const char *method,
    size_t method_len, const char *path, size_t path_len,
    orbit_route_match_t *m)
{
    size_t            i;
    orbit_route_rc_e  rc;

    rc = ORBIT_ROUTE_NOT_FOUND;

    for (i = 0; i < n; i++) {
        if (!orbit_route_match(routes[i].pattern, path, path_len, m)) {
            continue;
        }

        if (strlen(routes[i].method) == method_len
            && memcmp(routes[i].method, method, method_len) == 0)
        {
            m->route = &routes[i];
            return ORBIT_ROUTE_FOUND;
        }

        rc = ORBIT_ROUTE_BAD_METHOD;
    }

    m->route = NULL;
    m->nparams = 0;

    return rc;
}


size_t
orbit_route_allow(const orbit_route_t *routes, size_t n, const char *path,
    size_t path_len, char *buf, size_t size)
{
    char                 *p, *last;
    size_t                i, len;
    orbit_route_match_t   m;

    p = buf;
    last = buf + size;

    for (i = 0; i < n; i++) {
        if (!orbit_route_match(routes[i].pattern, path, path_len, &m)) {
            continue;
        }

        len = strlen(routes[i].method);

        if (p + len + 2 > last) {
            break;
        }

        if (p != buf) {
            *p++ = ',';
            *p++ = ' ';
        }

        memcpy(p, routes[i].method, len);
        p += len;
    }

    return (size_t) (p - buf);
}


static int
orbit_route_match(const char *pattern, const char *path, size_t path_len,
    orbit_route_match_t *m)
{
    const char  *pp, *end, *seg;

    pp = path;
    end = path + path_len;
    m->nparams = 0;

    /* a trailing slash names the same resource */
    if (path_len > 1 && end[-1] == '/') {
        end--;
    }

    while (*pattern) {

        if (*pattern == ':') {
            while (*pattern && *pattern != '/') {
                pattern++;
            }

            seg = pp;

            while (pp < end && *pp != '/') {
                pp++;
            }

            if (pp == seg || m->nparams == ORBIT_ROUTE_MAX_PARAMS) {
                return 0;
            }

            m->params[m->nparams].data = seg;
            m->params[m->nparams].len = (size_t) (pp - seg);
            m->nparams++;

            continue;
        }

        if (pp == end || *pp != *pattern) {
            return 0;
        }

        pp++;
        pattern++;
    }

    return pp == end;
}
