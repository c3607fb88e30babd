/*
 * OrbitDesk core: password hashing with argon2id (libargon2), stored in
 * the PHC encoded form so parameters can change without a migration.
 */

#include <string.h>
#include <sys/random.h>
#include <argon2.h>

#include "orbit_core.h"


/* OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane */
#define ORBIT_PASSWORD_T_COST   2
#define ORBIT_PASSWORD_M_COST   19456
#define ORBIT_PASSWORD_LANES    1
#define ORBIT_PASSWORD_SALT     16
#define ORBIT_PASSWORD_HASH     32


int
orbit_password_hash(const char *password, size_t len, char *out,
    size_t size)
{
    unsigned char  salt[ORBIT_PASSWORD_SALT];

    if (getrandom(salt, sizeof(salt), 0) != (ssize_t) sizeof(salt)) {
        return -1;
    }

    if (argon2id_hash_encoded(ORBIT_PASSWORD_T_COST, ORBIT_PASSWORD_M_COST,
                              ORBIT_PASSWORD_LANES, password, len, salt,
                              sizeof(salt), ORBIT_PASSWORD_HASH, out, size)
        != ARGON2_OK)
    {
        return -1;
    }

    return 0;
}


int
orbit_password_verify(const char *encoded, const char *password,
    size_t len)
{
    if (strncmp(encoded, "$argon2id$", sizeof("$argon2id$") - 1) != 0) {
        return 0;
    }

    return argon2id_verify(encoded, password, len) == ARGON2_OK;
}
