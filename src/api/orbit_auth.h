/*
 * OrbitDesk REST: who is calling, and may they.
 *
 * A route's access word (orbit_route_t.access) names the roles whose JWT
 * users may call it, the scope an API key needs for it (none: keys may
 * not), or ORBIT_PUBLIC.  JWT first, then X-Api-Key, as the spec says.
 */

#ifndef _ORBIT_AUTH_H_INCLUDED_
#define _ORBIT_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define ORBIT_ROLE_SUPERADMIN        0x0001
#define ORBIT_ROLE_ADMIN             0x0002
#define ORBIT_ROLE_MANAGER           0x0004
#define ORBIT_ROLE_AGENT             0x0008
#define ORBIT_ROLE_VISITOR           0x0010    /* a live-chat visitor: its
                                                  own routes only */
#define ORBIT_ROLES_TENANT                                                   \
    (ORBIT_ROLE_ADMIN|ORBIT_ROLE_MANAGER|ORBIT_ROLE_AGENT)
#define ORBIT_ROLES_ALL              (ORBIT_ROLE_SUPERADMIN|ORBIT_ROLES_TENANT)
#define ORBIT_ROLES_MASK             0x00ff

#define ORBIT_PUBLIC                 0x0100
#define ORBIT_RAW_BODY               0x0200    /* not JSON: the handler reads
                                                  r->request_body itself */
#define ORBIT_NO_LIMIT               0x0400    /* not limited per address */
#define ORBIT_WEBHOOK                (ORBIT_PUBLIC|ORBIT_NO_LIMIT)
                                               /* a provider's: signed */

#define ORBIT_SCOPE_CONTACTS_READ       0x010000
#define ORBIT_SCOPE_CONTACTS_WRITE      0x020000
#define ORBIT_SCOPE_CONVERSATIONS_READ  0x040000
#define ORBIT_SCOPE_MESSAGES_READ       0x080000
#define ORBIT_SCOPE_MESSAGES_SEND       0x100000
#define ORBIT_SCOPE_FLOWS_READ          0x200000
#define ORBIT_SCOPE_FLOWS_TRIGGER       0x400000
#define ORBIT_SCOPE_TEMPLATES_READ      0x800000
#define ORBIT_SCOPES_MASK               0xff0000


typedef enum {
    ORBIT_AUTH_NONE = 0,
    ORBIT_AUTH_USER,
    ORBIT_AUTH_KEY
} orbit_auth_kind_e;


typedef struct {
    orbit_auth_kind_e            kind;
    ngx_uint_t                   role;         /* one ORBIT_ROLE_ bit */
    ngx_uint_t                   scopes;       /* ORBIT_SCOPE_ bits */
    ngx_str_t                    user_id;
    ngx_str_t                    tenant_id;    /* empty: a superadmin */
    ngx_str_t                    key_id;
    ngx_str_t                    account;      /* a VISITOR's widget key */
} orbit_principal_t;


/* "ADMIN" -> ORBIT_ROLE_ADMIN; 0 when unknown */
ngx_uint_t orbit_auth_role(const u_char *name, size_t len);
const char *orbit_auth_role_name(ngx_uint_t role);


#endif /* _ORBIT_AUTH_H_INCLUDED_ */
