/*
 * OrbitDesk store: the migration runner (blocking; master and CLI only).
 */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "store/orbit_migrate.h"


#define ORBIT_MIGRATE_LOCK  "7274801"          /* pg_advisory_lock key */
#define ORBIT_MIGRATE_MAX   1024


static int orbit_migrate_cmp(const void *a, const void *b);
static int orbit_migrate_list(const char *dir, char ***names, size_t *n,
    char *err, size_t errlen);
static char *orbit_migrate_read(const char *dir, const char *name,
    char *err, size_t errlen);
static int orbit_migrate_exec(PGconn *pg, const char *sql,
    ExecStatusType want, const char *what, char *err, size_t errlen);
static int orbit_migrate_apply(PGconn *pg, const char *dir,
    const char *name, orbit_migrate_log_pt log, void *data, char *err,
    size_t errlen);


int
orbit_migrate(const char *conninfo, const char *hostaddr, const char *dir,
    orbit_migrate_log_pt log, void *data, char *err, size_t errlen)
{
    int          rc;
    char       **names;
    size_t       n, i;
    PGconn      *pg;
    const char  *keys[4], *values[4];

    keys[0] = "application_name"; values[0] = "orbitdesk-migrate";
    keys[1] = "dbname";           values[1] = conninfo;
    keys[2] = "hostaddr";         values[2] = hostaddr;
    keys[3] = NULL;               values[3] = NULL;

    if (orbit_migrate_list(dir, &names, &n, err, errlen) != 0) {
        return -1;
    }

    pg = PQconnectdbParams(keys, values, 1);

    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        free(names);
        return -1;
    }

    rc = -1;

    if (orbit_migrate_exec(pg, "SET client_min_messages = warning",
                           PGRES_COMMAND_OK, "setup", err, errlen) != 0
        || orbit_migrate_exec(pg, "SELECT pg_advisory_lock("
                                  ORBIT_MIGRATE_LOCK ")",
                              PGRES_TUPLES_OK, "lock", err, errlen) != 0
        || orbit_migrate_exec(pg,
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version text PRIMARY KEY,"
               " applied_at timestamptz NOT NULL DEFAULT now())",
               PGRES_COMMAND_OK, "schema_migrations", err, errlen) != 0)
    {
        goto done;
    }

    for (i = 0; i < n; i++) {
        if (orbit_migrate_apply(pg, dir, names[i], log, data, err, errlen)
            != 0)
        {
            goto done;
        }
    }

    /*
     * What must be redone at every start, whatever the version: the
     * migrations define it (the months of the messages' partitions).
     */

    if (orbit_migrate_exec(pg, "SELECT orbit_maintenance()"
                               " WHERE to_regproc('orbit_maintenance')"
                               " IS NOT NULL",
                           PGRES_TUPLES_OK, "orbit_maintenance()", err,
                           errlen) != 0)
    {
        goto done;
    }

    rc = 0;

done:

    /* the lock goes with the session */
    PQfinish(pg);

    for (i = 0; i < n; i++) {
        free(names[i]);
    }

    free(names);

    return rc;
}


static int
orbit_migrate_apply(PGconn *pg, const char *dir, const char *name,
    orbit_migrate_log_pt log, void *data, char *err, size_t errlen)
{
    int          applied;
    char        *sql, msg[300], version[256];
    size_t       len;
    PGresult    *res;
    const char  *params[1];

    /* the version is the file name without ".sql" */
    len = strlen(name) - 4;

    if (len >= sizeof(version)) {
        snprintf(err, errlen, "%s: name too long", name);
        return -1;
    }

    memcpy(version, name, len);
    version[len] = '\0';
    params[0] = version;

    res = PQexecParams(pg,
                       "SELECT 1 FROM schema_migrations WHERE version = $1",
                       1, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s: %s", version, PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }

    applied = PQntuples(res) > 0;
    PQclear(res);

    if (applied) {
        return 0;
    }

    sql = orbit_migrate_read(dir, name, err, errlen);
    if (sql == NULL) {
        return -1;
    }

    if (orbit_migrate_exec(pg, "BEGIN", PGRES_COMMAND_OK, version, err,
                           errlen) != 0)
    {
        free(sql);
        return -1;
    }

    /* our own file from the repository: several statements, no params */
    res = PQexec(pg, sql);
    free(sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK
        && PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        snprintf(err, errlen, "%s: %s", name, PQresultErrorMessage(res));
        PQclear(res);
        PQclear(PQexec(pg, "ROLLBACK"));
        return -1;
    }

    PQclear(res);

    res = PQexecParams(pg, "INSERT INTO schema_migrations (version)"
                           " VALUES ($1)", 1, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s: %s", version, PQresultErrorMessage(res));
        PQclear(res);
        PQclear(PQexec(pg, "ROLLBACK"));
        return -1;
    }

    PQclear(res);

    if (orbit_migrate_exec(pg, "COMMIT", PGRES_COMMAND_OK, version, err,
                           errlen) != 0)
    {
        return -1;
    }

    if (log) {
        snprintf(msg, sizeof(msg), "migration %s applied", version);
        log(data, msg);
    }

    return 0;
}


static int
orbit_migrate_exec(PGconn *pg, const char *sql, ExecStatusType want,
    const char *what, char *err, size_t errlen)
{
    PGresult  *res;

    res = PQexec(pg, sql);

    if (PQresultStatus(res) != want) {
        snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }

    PQclear(res);

    return 0;
}


static int
orbit_migrate_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* NNN_name.sql, sorted; anything else in the folder is ignored */

static int
orbit_migrate_list(const char *dir, char ***names, size_t *n, char *err,
    size_t errlen)
{
    DIR            *d;
    char          **list;
    size_t          len, count;
    struct dirent  *de;

    d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open \"%s\"", dir);
        return -1;
    }

    list = calloc(ORBIT_MIGRATE_MAX, sizeof(char *));
    if (list == NULL) {
        closedir(d);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    count = 0;

    while ((de = readdir(d)) != NULL) {
        len = strlen(de->d_name);

        if (len < 9
            || de->d_name[0] < '0' || de->d_name[0] > '9'
            || de->d_name[1] < '0' || de->d_name[1] > '9'
            || de->d_name[2] < '0' || de->d_name[2] > '9'
            || de->d_name[3] != '_'
            || strcmp(de->d_name + len - 4, ".sql") != 0)
        {
            continue;
        }

        if (count == ORBIT_MIGRATE_MAX) {
            break;
        }

        list[count] = strdup(de->d_name);
        if (list[count] == NULL) {
            break;
        }

        count++;
    }

    closedir(d);

    qsort(list, count, sizeof(char *), orbit_migrate_cmp);

    *names = list;
    *n = count;

    return 0;
}


static char *
orbit_migrate_read(const char *dir, const char *name, char *err,
    size_t errlen)
{
    long    size;
    char   *buf, path[4096];
    FILE   *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open \"%s\"", path);
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        snprintf(err, errlen, "cannot read \"%s\"", path);
        return NULL;
    }

    buf = malloc(size + 1);
    if (buf == NULL || fread(buf, 1, size, f) != (size_t) size) {
        free(buf);
        fclose(f);
        snprintf(err, errlen, "cannot read \"%s\"", path);
        return NULL;
    }

    buf[size] = '\0';
    fclose(f);

    return buf;
}
