/*
 * OrbitDesk store: ordered SQL migrations (migrations/NNN_name.sql), each
 * applied once, in its own transaction, and recorded in schema_migrations.
 * Blocking libpq: run only by the nginx master at start and by the
 * orbit-admin command line, never by a worker.
 */

#ifndef _ORBIT_MIGRATE_H_INCLUDED_
#define _ORBIT_MIGRATE_H_INCLUDED_


#include <stddef.h>


typedef void (*orbit_migrate_log_pt)(void *data, const char *msg);


/*
 * conninfo: a libpq connection string; hostaddr: NULL or an address that
 * overrides its host's lookup.  Returns 0 on success, -1 with err set.
 * Concurrent callers (several nodes starting) serialise on an advisory
 * lock; each migration is applied by exactly one of them.
 */
int orbit_migrate(const char *conninfo, const char *hostaddr,
    const char *dir, orbit_migrate_log_pt log, void *data, char *err,
    size_t errlen);


#endif /* _ORBIT_MIGRATE_H_INCLUDED_ */
