/*
 * orbit-admin: the store's command line.  A separate program, run by
 * tools/orbit: its libpq calls block, as a command line's may; nothing
 * here is linked into the nginx modules.
 *
 *   orbit-admin migrate CONNINFO DIR
 *       apply the pending migrations of DIR
 *   orbit-admin hash-password PASSWORD
 *       prints the argon2id hash a users row stores
 *   orbit-admin seed CONNINFO
 *       create the demo tenant, its admin and the superadmin when missing;
 *       prints "created EMAIL PASSWORD" for each account it made (random
 *       passwords, shown once) and "exists EMAIL" for the others
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <libpq-fe.h>

#include "core/orbit_core.h"
#include "store/orbit_migrate.h"


#define ORBIT_DEMO_TENANT_SLUG  "demo"
#define ORBIT_DEMO_TENANT_NAME  "Demo Company"


typedef struct {
    const char  *email;
    const char  *name;
    const char  *role;
    int          in_tenant;
} orbit_seed_user_t;


static const orbit_seed_user_t  orbit_seed_users[] = {
    { "admin@demo.orbitdesk.local", "Demo Admin", "ADMIN", 1 },
    { "superadmin@orbitdesk.local", "Platform Superadmin", "SUPERADMIN", 0 },
};


static void orbit_admin_log(void *data, const char *msg);
static int orbit_admin_seed(const char *conninfo);
static int orbit_admin_seed_user(PGconn *pg, const char *tenant_id,
    const orbit_seed_user_t *u);
static void orbit_admin_password(char *buf, size_t len);


int
main(int argc, char **argv)
{
    char  err[1024];

    if (argc == 4 && strcmp(argv[1], "migrate") == 0) {
        if (orbit_migrate(argv[2], NULL, argv[3], orbit_admin_log, NULL,
                          err, sizeof(err))
            != 0)
        {
            fprintf(stderr, "orbit-admin: migrations failed: %s\n", err);
            return 1;
        }

        return 0;
    }

    if (argc == 3 && strcmp(argv[1], "hash-password") == 0) {
        if (orbit_password_hash(argv[2], strlen(argv[2]), err, sizeof(err))
            != 0)
        {
            fprintf(stderr, "orbit-admin: cannot hash\n");
            return 1;
        }

        printf("%s\n", err);
        return 0;
    }

    if (argc == 3 && strcmp(argv[1], "seed") == 0) {
        return orbit_admin_seed(argv[2]) == 0 ? 0 : 1;
    }

    fprintf(stderr, "usage: orbit-admin migrate CONNINFO DIR\n"
                    "       orbit-admin hash-password PASSWORD\n"
                    "       orbit-admin seed CONNINFO\n");
    return 2;
}


static void
orbit_admin_log(void *data, const char *msg)
{
    fprintf(stderr, "orbit-admin: %s\n", msg);
}


static int
orbit_admin_seed(const char *conninfo)
{
    int          rc;
    char         tenant_id[64];
    size_t       i;
    PGconn      *pg;
    PGresult    *res;
    const char  *params[2];

    pg = PQconnectdb(conninfo);

    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "orbit-admin: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }

    params[0] = ORBIT_DEMO_TENANT_NAME;
    params[1] = ORBIT_DEMO_TENANT_SLUG;

    /* the no-op update makes RETURNING give the row that already exists */
    res = PQexecParams(pg,
              "INSERT INTO tenants (name, slug, status)"
              " VALUES ($1, $2, 'active')"
              " ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug"
              " RETURNING id",
              2, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "orbit-admin: demo tenant: %s",
                PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(pg);
        return -1;
    }

    snprintf(tenant_id, sizeof(tenant_id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    printf("tenant %s %s\n", ORBIT_DEMO_TENANT_SLUG, tenant_id);

    rc = 0;

    for (i = 0; i < sizeof(orbit_seed_users) / sizeof(orbit_seed_users[0]);
         i++)
    {
        if (orbit_admin_seed_user(pg, tenant_id, &orbit_seed_users[i]) != 0)
        {
            rc = -1;
            break;
        }
    }

    PQfinish(pg);

    return rc;
}


static int
orbit_admin_seed_user(PGconn *pg, const char *tenant_id,
    const orbit_seed_user_t *u)
{
    char         password[24], hash[ORBIT_PASSWORD_ENCODED_LEN];
    PGresult    *res;
    const char  *params[5];

    orbit_admin_password(password, sizeof(password));

    if (orbit_password_hash(password, strlen(password), hash, sizeof(hash))
        != 0)
    {
        fprintf(stderr, "orbit-admin: cannot hash a password\n");
        return -1;
    }

    params[0] = u->in_tenant ? tenant_id : NULL;
    params[1] = u->email;
    params[2] = u->name;
    params[3] = hash;
    params[4] = u->role;

    res = PQexecParams(pg,
              "INSERT INTO users (tenant_id, email, name, password_hash, role)"
              " VALUES ($1, $2, $3, $4, $5)"
              " ON CONFLICT (lower(email)) DO NOTHING RETURNING id",
              5, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "orbit-admin: %s: %s", u->email,
                PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }

    if (PQntuples(res) == 1) {
        printf("created %s %s %s\n", u->role, u->email, password);

    } else {
        printf("exists %s %s\n", u->role, u->email);
    }

    PQclear(res);

    return 0;
}


/* len - 1 characters from an unambiguous alphabet, nul-terminated */

static void
orbit_admin_password(char *buf, size_t len)
{
    size_t         i;
    unsigned char  rnd[64];

    static const char  alphabet[] =
        "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

    if (len > sizeof(rnd)) {
        len = sizeof(rnd);
    }

    if (getrandom(rnd, len, 0) != (ssize_t) len) {
        abort();
    }

    for (i = 0; i < len - 1; i++) {
        buf[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    }

    buf[len - 1] = '\0';
}
