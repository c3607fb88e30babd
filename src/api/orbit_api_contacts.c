/*
 * OrbitDesk REST: /api/v1/contacts — a tenant's CRM contacts.
 *
 *   GET    /contacts?limit=&cursor=&search=&tag=   newest first (keyset)
 *   POST   /contacts                                create
 *   GET    /contacts/:id                            read
 *   PATCH  /contacts/:id                            update
 *   DELETE /contacts/:id                            delete
 *   POST   /contacts/:id/tags   {"tags": [...]}     add tags (distinct)
 *   DELETE /contacts/:id/tags/:tag                  remove a tag
 *   POST   /contacts/import     CSV body            upsert by phone
 *   GET    /contacts/export                         CSV of every contact
 *
 * Every statement takes the tenant from the caller's credentials
 * (ar->who.tenant_id), never from the request, and filters on it: another
 * tenant's contact is "not found", whatever its id.  A request is one
 * statement; a write keeps tenant_counters.contacts (the unfiltered total
 * of the list) and appends its domain_events in that same statement.
 */

#include "api/orbit_api.h"
#include "core/orbit_csv.h"


#define ORBIT_CONTACT_MAX_NAME       200     /* characters */
#define ORBIT_CONTACT_MAX_TAGS       50
#define ORBIT_CONTACT_MAX_TAG        50      /* characters */
#define ORBIT_CONTACT_MAX_FIELDS     100     /* customFields keys */
#define ORBIT_CONTACT_MAX_KEY        100     /* characters */
#define ORBIT_CONTACT_MAX_VALUE      1000    /* characters */
#define ORBIT_CONTACT_MAX_URL        2048
#define ORBIT_CONTACT_MAX_SEARCH     100

#define ORBIT_IMPORT_MAX_ROWS        10000
#define ORBIT_IMPORT_MAX_ERRORS      1000    /* listed; all are counted */

#define ORBIT_EXPORT_CHUNK           65536


#define ORBIT_CONTACT_JSON                                                   \
    "json_build_object('id', c.id, 'phone', c.phone, 'name', c.name,"       \
    " 'email', c.email, 'tags', c.tags, 'customFields', c.custom_fields,"   \
    " 'optedIn', c.opted_in, 'avatarUrl', c.avatar_url,"                    \
    " 'createdAt', c.created_at, 'updatedAt', c.updated_at)"

/* a contact as a row whose JSON is the contact's: json_agg(page) */
#define ORBIT_CONTACT_COLS                                                   \
    "c.id, c.phone, c.name, c.email, c.tags,"                                \
    " c.custom_fields AS \"customFields\", c.opted_in AS \"optedIn\","       \
    " c.avatar_url AS \"avatarUrl\", c.created_at AS \"createdAt\","         \
    " c.updated_at AS \"updatedAt\""

/*
 * A page of the list: the CTE "page" holds up to 101 rows in list order
 * (newest first), $2 of them are shown, and the cursor names the last
 * shown row when a row follows it.  $3/$4, the cursor's microseconds and
 * id, are both NULL on the first page.
 */
#define ORBIT_CONTACT_PAGE_MAX  "101"

#define ORBIT_CONTACT_BEFORE                                                 \
    "(c.created_at, c.id) < ("                                               \
    "  COALESCE('epoch'::timestamptz + $3::bigint * interval '1 microsecond',"\
    "           'infinity'),"                                                \
    "  COALESCE($4::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))"

#define ORBIT_CONTACT_PAGE_DATA                                              \
    "COALESCE((SELECT json_agg(p ORDER BY p.\"createdAt\" DESC, p.id DESC)"  \
    "  FROM (SELECT * FROM page LIMIT $2::int) p), '[]')"

#define ORBIT_CONTACT_PAGE_CURSOR                                            \
    "CASE WHEN EXISTS (SELECT 1 FROM page OFFSET $2::int)"                   \
    " THEN (SELECT (extract(epoch FROM p.\"createdAt\") * 1000000)::bigint"  \
    "              || '.' || p.id"                                           \
    "       FROM page p OFFSET $2::int - 1 LIMIT 1) END"

/* the expression of the trigram index contacts_search_idx (003) */
#define ORBIT_CONTACT_SEARCH                                                 \
    "lower(coalesce(c.name, '') || E'\\n' || c.phone || E'\\n'"             \
    " || coalesce(c.email, ''))"

/* the filters of the list, shared by its page and its bounded count */
#define ORBIT_CONTACT_FILTERS                                                \
    "c.tenant_id = $1::uuid"                                                 \
    " AND ($5::text IS NULL OR " ORBIT_CONTACT_SEARCH " LIKE lower($5))"     \
    " AND ($6::text IS NULL OR c.tags @> ARRAY[$6::text])"

/* tags of a JSON array, each once, in the order first given */
#define ORBIT_CONTACT_TAGS(j)                                                \
    "ARRAY(SELECT e.t FROM jsonb_array_elements_text(" j ")"                \
    " WITH ORDINALITY AS e(t, n) GROUP BY e.t ORDER BY min(e.n))"


typedef enum {
    ORBIT_COL_IGNORE = 0,
    ORBIT_COL_PHONE,
    ORBIT_COL_NAME,
    ORBIT_COL_EMAIL,
    ORBIT_COL_TAGS,
    ORBIT_COL_OPTED_IN,
    ORBIT_COL_AVATAR_URL,
    ORBIT_COL_CUSTOM
} orbit_import_col_e;


typedef struct {
    const char                  *name;
    orbit_import_col_e           kind;
} orbit_import_known_t;


typedef struct {
    orbit_import_col_e           kind;
    ngx_str_t                    name;         /* as in the header */
    ngx_str_t                    key;          /* "name", JSON-escaped */
} orbit_import_col_t;


/* a growing buffer of JSON text (ngx_alloc()ed: freed by the cleanup) */
typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       size;
} orbit_import_buf_t;


typedef struct {
    ngx_str_node_t               sn;           /* first: a phone */
    uint64_t                     row;
} orbit_import_phone_t;


typedef struct {
    orbit_api_req_t             *ar;
    orbit_import_col_t          *cols;
    size_t                       ncols;
    ngx_uint_t                   rows;
    ngx_uint_t                   valid;
    ngx_uint_t                   failed;
    ngx_uint_t                   nerrors;
    orbit_import_buf_t           out;          /* [{row, phone, ...}] */
    orbit_import_buf_t           errors;       /* [{row, column, message}] */
    ngx_rbtree_t                 phones;       /* seen in valid rows */
    ngx_rbtree_node_t            sentinel;
    size_t                       phone;        /* its column */
    ngx_uint_t                   status;       /* a fatal error, or 0 */
    u_char                       message[200];
    unsigned                     header:1;
    unsigned                     row_failed:1;
    unsigned                     nomem:1;
} orbit_import_t;


typedef struct {
    ngx_http_request_t          *r;
    ngx_chain_t                 *out;
    ngx_chain_t                **last;
    ngx_buf_t                   *b;
    off_t                        len;
} orbit_export_t;


static const orbit_v_field_t  orbit_contact_create_fields[] = {
    { "phone", ORBIT_V_STRING, 1, 0, ORBIT_V_E164, 0, 0, NULL },
    { "name", ORBIT_V_STRING, 0, 1, ORBIT_V_ANY, 1, 0, NULL },
    { "email", ORBIT_V_STRING, 0, 1, ORBIT_V_EMAIL, 0, 254, NULL },
    { "tags", ORBIT_V_STRINGS, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { "customFields", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CONTACT_MAX_FIELDS, NULL },
    { "optedIn", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { "avatarUrl", ORBIT_V_STRING, 0, 1, ORBIT_V_URL, 0,
      ORBIT_CONTACT_MAX_URL, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_contact_update_fields[] = {
    { "phone", ORBIT_V_STRING, 0, 0, ORBIT_V_E164, 0, 0, NULL },
    { "name", ORBIT_V_STRING, 0, 1, ORBIT_V_ANY, 1, 0, NULL },
    { "email", ORBIT_V_STRING, 0, 1, ORBIT_V_EMAIL, 0, 254, NULL },
    { "tags", ORBIT_V_STRINGS, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { "customFields", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CONTACT_MAX_FIELDS, NULL },
    { "optedIn", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { "avatarUrl", ORBIT_V_STRING, 0, 1, ORBIT_V_URL, 0,
      ORBIT_CONTACT_MAX_URL, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_contact_tags_fields[] = {
    { "tags", ORBIT_V_STRINGS, 1, 0, ORBIT_V_ANY, 1, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


/*
 * The columns an import knows (any case); any other named column is a
 * custom field.  The read-only columns of our own export are skipped, so
 * that an exported file imports as it is.
 */
static const orbit_import_known_t  orbit_import_known[] = {
    { "phone", ORBIT_COL_PHONE },
    { "name", ORBIT_COL_NAME },
    { "email", ORBIT_COL_EMAIL },
    { "tags", ORBIT_COL_TAGS },
    { "optedIn", ORBIT_COL_OPTED_IN },
    { "avatarUrl", ORBIT_COL_AVATAR_URL },
    { "id", ORBIT_COL_IGNORE },
    { "createdAt", ORBIT_COL_IGNORE },
    { "updatedAt", ORBIT_COL_IGNORE },
    { NULL, 0 }
};


static const char  orbit_contact_e164[] =
    "phone must be E.164 (+ and 8 to 15 digits)";


static ngx_int_t orbit_contacts_check(orbit_api_req_t *ar,
    const orbit_v_field_t *fields);
static void orbit_contacts_check_more(json_t *body, orbit_v_errors_t *errs);
static const char *orbit_contacts_body_param(orbit_api_req_t *ar);
static ngx_int_t orbit_contacts_tag_valid(const u_char *s, size_t len);
static ngx_int_t orbit_contacts_reserved(const char *key);
static char *orbit_contacts_arg(orbit_api_req_t *ar, const char *name);
static char *orbit_contacts_like(ngx_pool_t *pool, const char *s);

static ngx_int_t orbit_import_content_type(orbit_api_req_t *ar);
static void orbit_import_cleanup(void *data);
static int orbit_import_row(const orbit_csv_row_t *row, void *data);
static int orbit_import_header(orbit_import_t *im,
    const orbit_csv_row_t *row);
static ngx_int_t orbit_import_field(orbit_import_t *im,
    orbit_import_col_t *col, const orbit_slice_t *f, uint64_t record);
static void orbit_import_custom(orbit_import_t *im,
    const orbit_csv_row_t *row);
static void orbit_import_tags(orbit_import_t *im, orbit_import_col_t *col,
    const orbit_slice_t *f, uint64_t record);
static ngx_int_t orbit_import_bool(const orbit_slice_t *f, int *value);
static void orbit_import_error(orbit_import_t *im, uint64_t record,
    const ngx_str_t *column, const char *message);
static void orbit_import_seen(orbit_import_t *im, const orbit_slice_t *f,
    uint64_t record);
static u_char *orbit_import_reserve(orbit_import_t *im,
    orbit_import_buf_t *b, size_t n);
static void orbit_import_raw(orbit_import_t *im, orbit_import_buf_t *b,
    const char *s, size_t len);
static void orbit_import_str(orbit_import_t *im, orbit_import_buf_t *b,
    const char *s, size_t len);

static void orbit_export_done(orbit_api_req_t *ar, PGresult *res);
static ngx_int_t orbit_export_field(orbit_export_t *ex, const char *s,
    size_t len, unsigned flags, ngx_uint_t first);
static ngx_int_t orbit_export_bytes(orbit_export_t *ex, const char *s,
    size_t len);
static u_char *orbit_export_reserve(orbit_export_t *ex, size_t len);
static ngx_int_t orbit_export_send(orbit_api_req_t *ar, orbit_export_t *ex);


/*
 * GET /api/v1/contacts?limit=&cursor=&search=&tag=
 *
 * {"data": [contact...], "total": N, "totalIsCapped": false,
 *  "nextCursor": "..."|null}
 *
 * The cursor is the last row's (created_at in microseconds, id): it stays
 * valid when that contact is deleted meanwhile.
 *
 * The total of the unfiltered list is the tenant's counter.  A filtered
 * total has no counter to come from: it is counted, but only up to 10,000
 * matches (past that, "total": 10000 and "totalIsCapped": true), so that a
 * broad search over a big tenant costs a bounded scan instead of counting
 * every row on every page.  Search is a case-insensitive substring of
 * name, phone or email; tag an exact tag.
 */

ngx_int_t
orbit_api_contacts_list(orbit_api_req_t *ar)
{
    char         *search, *tag;
    size_t        len;
    const char  **v, *cursor;

    /*
     * Two statements, both prepared.  The unfiltered one, the hot path,
     * has no optional clause and a constant inner LIMIT, so that
     * PostgreSQL settles on one generic plan instead of planning every
     * call; the filtered one is planned with its values, which lets the
     * trigram index serve a search.
     */

    static const char  all[] =
        "WITH page AS ("
        "  SELECT " ORBIT_CONTACT_COLS " FROM contacts c"
        "  WHERE c.tenant_id = $1::uuid AND " ORBIT_CONTACT_BEFORE
        "  ORDER BY c.created_at DESC, c.id DESC"
        "  LIMIT " ORBIT_CONTACT_PAGE_MAX
        ")"
        " SELECT 200, json_build_object("
        "  'data', " ORBIT_CONTACT_PAGE_DATA ","
        "  'total', (SELECT GREATEST(COALESCE(sum(t.contacts), 0), 0)"
        "            FROM tenant_counters t WHERE t.tenant_id = $1::uuid),"
        "  'totalIsCapped', false,"
        "  'nextCursor', " ORBIT_CONTACT_PAGE_CURSOR ")";

    static const char  filtered[] =
        "WITH page AS ("
        "  SELECT " ORBIT_CONTACT_COLS " FROM contacts c"
        "  WHERE " ORBIT_CONTACT_FILTERS " AND " ORBIT_CONTACT_BEFORE
        "  ORDER BY c.created_at DESC, c.id DESC"
        "  LIMIT " ORBIT_CONTACT_PAGE_MAX
        "), matched AS ("
        "  SELECT count(*) AS n FROM ("
        "    SELECT 1 FROM contacts c WHERE " ORBIT_CONTACT_FILTERS
        "    LIMIT 10001) m"
        ")"
        " SELECT 200, json_build_object("
        "  'data', " ORBIT_CONTACT_PAGE_DATA ","
        "  'total', (SELECT least(n, 10000) FROM matched),"
        "  'totalIsCapped', (SELECT n > 10000 FROM matched),"
        "  'nextCursor', " ORBIT_CONTACT_PAGE_CURSOR ")";

    v = ngx_pcalloc(ar->r->pool, 6 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_page_args(ar, &v[1], &cursor, 100) != NGX_OK) {
        return ar->rc;
    }

    if (cursor && orbit_api_cursor(ar, cursor, &v[2], &v[3]) != NGX_OK)
    {
        return ar->rc;
    }

    search = orbit_contacts_arg(ar, "search");

    if (search && search[0]) {
        len = ngx_strlen(search);

        if (!orbit_valid_utf8(search, len)) {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "search must be valid UTF-8 text");
        }

        if (orbit_utf8_chars((char *) search, len)
            > ORBIT_CONTACT_MAX_SEARCH)
        {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "search must be shorter than or "
                                        "equal to 100 characters");
        }

        v[4] = orbit_contacts_like(ar->r->pool, search);
        if (v[4] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    tag = orbit_contacts_arg(ar, "tag");

    if (tag && tag[0]) {
        len = ngx_strlen(tag);

        if (!orbit_valid_utf8(tag, len)
            || orbit_utf8_chars((char *) tag, len)
               > ORBIT_CONTACT_MAX_TAG)
        {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "tag must be UTF-8 text of at most "
                                        "50 characters");
        }

        v[5] = tag;
    }

    if (v[4] == NULL && v[5] == NULL) {
        return orbit_api_query(ar, all, 4, v, orbit_api_respond_row);
    }

    return orbit_api_query(ar, filtered, 6, v, orbit_api_respond_row);
}


/*
 * POST /api/v1/contacts {phone, name?, email?, tags?, customFields?,
 * optedIn?, avatarUrl?} -> 201 contact; 409 when the tenant has the phone.
 * The validated body goes to the statement as it came (jsonb): numbers in
 * customFields keep their exact text.
 */

ngx_int_t
orbit_api_contacts_create(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH b AS (SELECT $2::jsonb AS j"
        "), ins AS ("
        "  INSERT INTO contacts (tenant_id, phone, name, email, tags,"
        "    custom_fields, opted_in, avatar_url)"
        "  SELECT $1::uuid, j->>'phone', j->>'name', j->>'email',"
        "    " ORBIT_CONTACT_TAGS("COALESCE(j->'tags', '[]')") ","
        "    COALESCE(j->'customFields', '{}'),"
        "    COALESCE((j->>'optedIn')::boolean, false), j->>'avatarUrl'"
        "  FROM b"
        "  ON CONFLICT (tenant_id, phone) DO NOTHING"
        "  RETURNING *"
        "), cnt AS ("
        "  INSERT INTO tenant_counters AS t (tenant_id, shard, contacts)"
        "  SELECT $1::uuid, orbit_counter_shard(), 1 FROM ins"
        "  ON CONFLICT (tenant_id, shard) DO UPDATE"
        "    SET contacts = t.contacts + 1, updated_at = now()"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'contact_created', jsonb_build_object("
        "    'contactId', i.id, 'phone', i.phone, 'tags', i.tags,"
        "    'source', 'api')"
        "  FROM ins i"
        ")"
        " SELECT 201, " ORBIT_CONTACT_JSON ", NULL FROM ins c"
        " UNION ALL SELECT 409, NULL, 'phone already exists'"
        " LIMIT 1";

    if (orbit_contacts_check(ar, orbit_contact_create_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 2 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    v[1] = orbit_contacts_body_param(ar);
    if (v[1] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 2, v, orbit_api_respond_row);
}


/* GET /api/v1/contacts/:id */

ngx_int_t
orbit_api_contacts_get(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM contacts c"
        " WHERE c.tenant_id = $1::uuid AND c.id = $2::uuid"
        " UNION ALL SELECT 404, NULL, 'Contact not found'"
        " LIMIT 1";

    v = ngx_palloc(ar->r->pool, 2 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_uuid_param(ar, 0, &v[1]) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 2, v, orbit_api_respond_row);
}


/*
 * PATCH /api/v1/contacts/:id: the fields given are replaced (null clears
 * name, email, avatarUrl; tags and customFields are replaced whole), the
 * others kept.  Tags that appear or go are recorded as events.
 */

ngx_int_t
orbit_api_contacts_update(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH b AS (SELECT $3::jsonb AS j"
        "), old AS ("
        "  SELECT c.id, c.tags FROM contacts c"
        "  WHERE c.tenant_id = $1::uuid AND c.id = $2::uuid FOR UPDATE"
        "), dup AS ("
        "  SELECT 1 FROM contacts d, b"
        "  WHERE b.j ? 'phone' AND d.tenant_id = $1::uuid"
        "    AND d.phone = b.j->>'phone' AND d.id <> $2::uuid"
        "), upd AS ("
        "  UPDATE contacts c SET"
        "    phone = COALESCE(j->>'phone', c.phone),"
        "    name = CASE WHEN j ? 'name' THEN j->>'name' ELSE c.name END,"
        "    email = CASE WHEN j ? 'email' THEN j->>'email'"
        "      ELSE c.email END,"
        "    tags = CASE WHEN j ? 'tags'"
        "      THEN " ORBIT_CONTACT_TAGS("j->'tags'") " ELSE c.tags END,"
        "    custom_fields = COALESCE(j->'customFields', c.custom_fields),"
        "    opted_in = COALESCE((j->>'optedIn')::boolean, c.opted_in),"
        "    avatar_url = CASE WHEN j ? 'avatarUrl' THEN j->>'avatarUrl'"
        "      ELSE c.avatar_url END,"
        "    updated_at = now()"
        "  FROM old, b"
        "  WHERE c.id = old.id AND NOT EXISTS (SELECT 1 FROM dup)"
        "  RETURNING c.*, old.tags AS was"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'tag_added', jsonb_build_object("
        "    'contactId', u.id, 'tag', t.tag, 'source', 'api')"
        "  FROM upd u, unnest(u.tags) AS t(tag) WHERE t.tag <> ALL (u.was)"
        "  UNION ALL"
        "  SELECT $1::uuid, 'tag_removed', jsonb_build_object("
        "    'contactId', u.id, 'tag', t.tag, 'source', 'api')"
        "  FROM upd u, unnest(u.was) AS t(tag) WHERE t.tag <> ALL (u.tags)"
        ")"
        " SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM upd c"
        " UNION ALL SELECT 409, NULL, 'phone already exists'"
        "   WHERE EXISTS (SELECT 1 FROM old) AND EXISTS (SELECT 1 FROM dup)"
        " UNION ALL SELECT 404, NULL, 'Contact not found'"
        " LIMIT 1";

    if (orbit_contacts_check(ar, orbit_contact_update_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_uuid_param(ar, 0, &v[1]) != NGX_OK) {
        return ar->rc;
    }

    v[2] = orbit_contacts_body_param(ar);
    if (v[2] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/* DELETE /api/v1/contacts/:id -> 200 with the contact as it was */

ngx_int_t
orbit_api_contacts_delete(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH del AS ("
        "  DELETE FROM contacts c"
        "  WHERE c.tenant_id = $1::uuid AND c.id = $2::uuid"
        "  RETURNING c.*"
        "), cnt AS ("
        "  INSERT INTO tenant_counters AS t (tenant_id, shard, contacts)"
        "  SELECT $1::uuid, orbit_counter_shard(), -1 FROM del"
        "  ON CONFLICT (tenant_id, shard) DO UPDATE"
        "    SET contacts = t.contacts - 1, updated_at = now()"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'contact_deleted', jsonb_build_object("
        "    'contactId', d.id, 'phone', d.phone)"
        "  FROM del d"
        ")"
        " SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM del c"
        " UNION ALL SELECT 404, NULL, 'Contact not found'"
        " LIMIT 1";

    v = ngx_palloc(ar->r->pool, 2 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_uuid_param(ar, 0, &v[1]) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 2, v, orbit_api_respond_row);
}


/*
 * POST /api/v1/contacts/:id/tags {"tags": ["VIP"]} -> 200 contact: the
 * tags it did not have are appended, each recorded as a tag_added event.
 */

ngx_int_t
orbit_api_contacts_tag(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH old AS ("
        "  SELECT c.* FROM contacts c"
        "  WHERE c.tenant_id = $1::uuid AND c.id = $2::uuid FOR UPDATE"
        "), add AS ("
        "  SELECT e.t, min(e.n) AS n"
        "  FROM old, jsonb_array_elements_text($3::jsonb->'tags')"
        "    WITH ORDINALITY AS e(t, n)"
        "  WHERE e.t <> ALL (old.tags)"
        "  GROUP BY e.t"
        "), too_many AS ("
        "  SELECT 1 FROM old"
        "  WHERE cardinality(old.tags) + (SELECT count(*) FROM add) > 50"
        "), upd AS ("
        "  UPDATE contacts c"
        "  SET tags = c.tags || ARRAY(SELECT t FROM add ORDER BY n),"
        "    updated_at = now()"
        "  FROM old WHERE c.id = old.id"
        "    AND EXISTS (SELECT 1 FROM add)"
        "    AND NOT EXISTS (SELECT 1 FROM too_many)"
        "  RETURNING c.*"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'tag_added', jsonb_build_object("
        "    'contactId', u.id, 'tag', a.t, 'source', 'api')"
        "  FROM upd u, add a ORDER BY a.n"
        ")"
        " SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM upd c"
        " UNION ALL SELECT 400, NULL, 'a contact has at most 50 tags'"
        "   FROM too_many"
        " UNION ALL SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM old c"
        " UNION ALL SELECT 404, NULL, 'Contact not found'"
        " LIMIT 1";

    if (orbit_contacts_check(ar, orbit_contact_tags_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_uuid_param(ar, 0, &v[1]) != NGX_OK) {
        return ar->rc;
    }

    v[2] = orbit_contacts_body_param(ar);
    if (v[2] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/*
 * DELETE /api/v1/contacts/:id/tags/:tag -> 200 contact, without the tag
 * (already without it: unchanged, no event).  nginx has percent-decoded
 * the path, so a tag with a "/" cannot be named here: PATCH the tags.
 */

ngx_int_t
orbit_api_contacts_untag(orbit_api_req_t *ar)
{
    u_char       *tag;
    size_t        len;
    const char  **v;

    static const char  sql[] =
        "WITH old AS ("
        "  SELECT c.* FROM contacts c"
        "  WHERE c.tenant_id = $1::uuid AND c.id = $2::uuid FOR UPDATE"
        "), upd AS ("
        "  UPDATE contacts c"
        "  SET tags = array_remove(c.tags, $3::text), updated_at = now()"
        "  FROM old WHERE c.id = old.id AND $3::text = ANY (old.tags)"
        "  RETURNING c.*"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'tag_removed', jsonb_build_object("
        "    'contactId', u.id, 'tag', $3::text, 'source', 'api')"
        "  FROM upd u"
        ")"
        " SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM upd c"
        " UNION ALL SELECT 200, " ORBIT_CONTACT_JSON ", NULL FROM old c"
        " UNION ALL SELECT 404, NULL, 'Contact not found'"
        " LIMIT 1";

    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_uuid_param(ar, 0, &v[1]) != NGX_OK) {
        return ar->rc;
    }

    tag = orbit_api_param(ar, 1);
    if (tag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(tag);

    if (!orbit_valid_utf8((char *) tag, len)
        || !orbit_contacts_tag_valid(tag, len))
    {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "tag must be 1 to 50 characters, "
                                    "without ';', '|' or control "
                                    "characters");
    }

    v[2] = (char *) tag;

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/*
 * POST /api/v1/contacts/import, the CSV file as the body (text/csv; its
 * size is capped by client_max_body_size).
 *
 * The first record is the header: phone (required), name, email, tags
 * (split on ';' or '|'), optedIn (true/false, yes/no, 1/0), avatarUrl, in
 * any case and order; id, createdAt and updatedAt (our export's) are
 * skipped; any other named column is a custom field of that name.  Every
 * row is parsed and checked here, in C; a bad row is reported and left
 * out.  Then one statement upserts every good row on (tenant, phone): a
 * new phone is created (counted, contact_created), a known one gets the
 * non-empty cells of the row (customFields merged, tags replaced; new
 * tags recorded as tag_added).  An empty cell never erases anything.
 *
 * -> {"imported": n, "updated": m, "failed": k,
 *     "errors": [{"row": 3, "column": "phone", "message": "..."}]}
 * where row is the record number in the file (the header is row 1, blank
 * lines count, as in a spreadsheet).  A file without a usable header, or
 * with more than 10,000 rows, is refused whole (400, 413).
 *
 * Parsing and checking run on the event loop, writing the statement's
 * JSON parameters straight into two buffers (no object trees): measured
 * at 6 to 16 ms for 10,000 rows (575 KB; jansson trees took 50 to 90),
 * and bounded by the row cap and client_max_body_size.
 */

ngx_int_t
orbit_api_contacts_import(orbit_api_req_t *ar)
{
    u_char              *msg;
    ngx_str_t            body;
    const char         **v;
    orbit_import_t      *im;
    orbit_csv_rc_e       crc;
    ngx_pool_cleanup_t  *cln;
    orbit_csv_parser_t   parser;

    static const char  sql[] =
        "WITH src AS ("
        "  SELECT * FROM jsonb_to_recordset($2::jsonb) AS s("
        "    \"row\" int, phone text, name text, email text, tags text[],"
        "    \"customFields\" jsonb, \"optedIn\" boolean,"
        "    \"avatarUrl\" text)"
        "), old AS ("
        "  SELECT c.id, c.tags AS was, s.* FROM src s"
        "  JOIN contacts c ON c.tenant_id = $1::uuid AND c.phone = s.phone"
        "  FOR UPDATE OF c"
        "), upd AS ("
        "  UPDATE contacts c SET"
        "    name = COALESCE(o.name, c.name),"
        "    email = COALESCE(o.email, c.email),"
        "    tags = COALESCE(o.tags, c.tags),"
        "    custom_fields = c.custom_fields"
        "      || COALESCE(o.\"customFields\", '{}'),"
        "    opted_in = COALESCE(o.\"optedIn\", c.opted_in),"
        "    avatar_url = COALESCE(o.\"avatarUrl\", c.avatar_url),"
        "    updated_at = now()"
        "  FROM old o WHERE c.id = o.id"
        "  RETURNING c.id, c.phone, c.tags, o.was"
        "), ins AS ("
        "  INSERT INTO contacts (tenant_id, phone, name, email, tags,"
        "    custom_fields, opted_in, avatar_url)"
        "  SELECT $1::uuid, s.phone, s.name, s.email,"
        "    COALESCE(s.tags, '{}'), COALESCE(s.\"customFields\", '{}'),"
        "    COALESCE(s.\"optedIn\", false), s.\"avatarUrl\""
        "  FROM src s"
        "  WHERE NOT EXISTS (SELECT 1 FROM old o WHERE o.phone = s.phone)"
        /* one created meanwhile by another request: reported below */
        "  ON CONFLICT (tenant_id, phone) DO NOTHING"
        "  RETURNING id, phone, tags"
        "), cnt AS ("
        "  INSERT INTO tenant_counters AS t (tenant_id, shard, contacts)"
        "  SELECT $1::uuid, orbit_counter_shard(), count(*) FROM ins"
        "  HAVING count(*) > 0"
        "  ON CONFLICT (tenant_id, shard) DO UPDATE"
        "    SET contacts = t.contacts + EXCLUDED.contacts,"
        "      updated_at = now()"
        "), ev AS ("
        "  INSERT INTO domain_events (tenant_id, type, payload)"
        "  SELECT $1::uuid, 'contact_created', jsonb_build_object("
        "    'contactId', i.id, 'phone', i.phone, 'tags', i.tags,"
        "    'source', 'import')"
        "  FROM ins i"
        "  UNION ALL"
        "  SELECT $1::uuid, 'tag_added', jsonb_build_object("
        "    'contactId', u.id, 'tag', t.tag, 'source', 'import')"
        "  FROM upd u, unnest(u.tags) AS t(tag) WHERE t.tag <> ALL (u.was)"
        "), lost AS ("
        "  SELECT s.\"row\" FROM src s"
        "  WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.phone = s.phone)"
        "    AND NOT EXISTS (SELECT 1 FROM upd WHERE upd.phone = s.phone)"
        "), errs AS ("
        "  SELECT e.e, (e.e->>'row')::bigint AS r, e.n"
        "  FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(e, n)"
        "  UNION ALL"
        "  SELECT jsonb_build_object('row', l.\"row\", 'column', 'phone',"
        "    'message', 'the phone was created meanwhile by another"
        " request: import the row again'), l.\"row\", 0"
        "  FROM lost l"
        ")"
        " SELECT 200, json_build_object("
        "  'imported', (SELECT count(*) FROM ins),"
        "  'updated', (SELECT count(*) FROM upd),"
        "  'failed', $4::bigint + (SELECT count(*) FROM lost),"
        "  'errors', COALESCE((SELECT jsonb_agg(e ORDER BY r, n) FROM errs),"
        "    '[]'))";

    /* without a raw-body route the core would have parsed it as JSON */

    if (ar->body != NULL || orbit_import_content_type(ar) != NGX_OK) {
        return orbit_api_send_error(ar, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    "send the CSV file as the body, with "
                                    "Content-Type: text/csv");
    }

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (orbit_api_raw_body(ar, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(ar->r->pool, sizeof(orbit_import_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    im = cln->data;
    ngx_memzero(im, sizeof(orbit_import_t));
    im->ar = ar;
    ngx_rbtree_init(&im->phones, &im->sentinel, ngx_str_rbtree_insert_value);

    cln->handler = orbit_import_cleanup;

    orbit_import_raw(im, &im->out, "[", 1);
    orbit_import_raw(im, &im->errors, "[", 1);

    orbit_csv_init(&parser, orbit_import_row, im);
    parser.flags = ORBIT_CSV_TRIM;

    crc = orbit_csv_feed(&parser, (char *) body.data, body.len);

    if (crc == ORBIT_CSV_OK) {
        crc = orbit_csv_finish(&parser);
    }

    orbit_csv_free(&parser);

    if (crc == ORBIT_CSV_NOMEM || im->nomem
        || (crc == ORBIT_CSV_STOPPED && !im->status))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (im->status) {
        return orbit_api_send_error(ar, im->status, (char *) im->message);
    }

    if (!im->header) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "the file is empty: a header row with "
                                    "a phone column is required");
    }

    /* "]" and a nul each: the buffers live as long as the request */

    orbit_import_raw(im, &im->out, "]", 2);
    orbit_import_raw(im, &im->errors, "]", 2);

    msg = ngx_pnalloc(ar->r->pool, NGX_INT_T_LEN + 1);

    if (im->nomem || msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(msg, "%ui%Z", im->failed);

    v[1] = (char *) im->out.data;
    v[2] = (char *) im->errors.data;
    v[3] = (char *) msg;

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/*
 * GET /api/v1/contacts/export -> text/csv, every contact of the tenant,
 * oldest first: phone, name, email, tags (";"-joined), optedIn, avatarUrl,
 * createdAt, then one column per custom field key (sorted).  Fields go
 * through orbit_csv_escape(): the phone column may keep its "+", every
 * other text field gets the formula guard.
 *
 * Not streamed: libpq hands over the whole result, and the body is built
 * from it in 64 KB buffers, then sent — fine up to tens of thousands of
 * contacts (about 150 bytes each); past that this wants a cursor-driven
 * (FETCH n) loop that sends as it goes.
 */

ngx_int_t
orbit_api_contacts_export(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH k AS ("
        "  SELECT COALESCE(array_agg(key ORDER BY key), '{}') AS keys"
        "  FROM (SELECT DISTINCT jsonb_object_keys(c.custom_fields) AS key"
        "        FROM contacts c WHERE c.tenant_id = $1::uuid) s"
        ")"
        " SELECT 0 AS kind, NULL::text, NULL::text, NULL::text, NULL::text,"
        "   NULL::text, NULL::text, NULL::text, to_json(k.keys)::text,"
        "   NULL::timestamptz, NULL::uuid"
        " FROM k"
        " UNION ALL"
        " SELECT 1, c.phone, c.name, c.email, array_to_string(c.tags, ';'),"
        "   c.opted_in::text, c.avatar_url,"
        "   to_char(c.created_at AT TIME ZONE 'UTC',"
        "     'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        "   (SELECT json_agg(c.custom_fields->>u.key ORDER BY u.n)"
        "    FROM unnest(k.keys) WITH ORDINALITY AS u(key, n))::text,"
        "   c.created_at, c.id"
        " FROM contacts c, k WHERE c.tenant_id = $1::uuid"
        " ORDER BY 1, 10, 11";

    v = ngx_palloc(ar->r->pool, sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 1, v, orbit_export_done);
}


static void
orbit_export_done(orbit_api_req_t *ar, PGresult *res)
{
    int              row, nrows, col;
    size_t           i, nkeys, len;
    json_t          *keys, *values, *val;
    ngx_uint_t       first;
    orbit_export_t   ex;
    json_error_t     err;

    static const char  *const  names[] = {
        "phone", "name", "email", "tags", "optedIn", "avatarUrl",
        "createdAt"
    };

    static const unsigned  flags[] = {
        ORBIT_CSV_ESC_PHONE, 0, 0, 0, ORBIT_CSV_ESC_RAW, 0,
        ORBIT_CSV_ESC_RAW
    };

    ngx_memzero(&ex, sizeof(orbit_export_t));
    ex.r = ar->r;
    ex.last = &ex.out;

    nrows = PQntuples(res);
    keys = NULL;

    if (nrows < 1 || PQnfields(res) < 9) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* row 0: the custom field keys, a JSON array of strings */

    keys = json_loadb(PQgetvalue(res, 0, 8), PQgetlength(res, 0, 8), 0,
                      &err);

    if (keys == NULL || !json_is_array(keys)) {
        goto failed;
    }

    nkeys = json_array_size(keys);

    for (i = 0; i < 7; i++) {
        if (orbit_export_field(&ex, names[i], ngx_strlen(names[i]), 0,
                               i == 0)
            != NGX_OK)
        {
            goto failed;
        }
    }

    for (i = 0; i < nkeys; i++) {
        val = json_array_get(keys, i);

        if (!json_is_string(val)
            || orbit_export_field(&ex, json_string_value(val),
                                  json_string_length(val), 0, 0)
               != NGX_OK)
        {
            goto failed;
        }
    }

    if (orbit_export_bytes(&ex, "\r\n", 2) != NGX_OK) {
        goto failed;
    }

    for (row = 1; row < nrows; row++) {

        for (col = 1; col <= 7; col++) {
            first = (col == 1);

            if (orbit_export_field(&ex, PQgetvalue(res, row, col),
                                   PQgetlength(res, row, col),
                                   flags[col - 1], first)
                != NGX_OK)
            {
                goto failed;
            }
        }

        values = NULL;

        if (nkeys && !PQgetisnull(res, row, 8)) {
            values = json_loadb(PQgetvalue(res, row, 8),
                                PQgetlength(res, row, 8), 0, &err);
            if (values == NULL) {
                goto failed;
            }
        }

        for (i = 0; i < nkeys; i++) {
            val = values ? json_array_get(values, i) : NULL;
            len = json_is_string(val) ? json_string_length(val) : 0;

            if (orbit_export_field(&ex, len ? json_string_value(val) : "",
                                   len, 0, 0)
                != NGX_OK)
            {
                json_decref(values);
                goto failed;
            }
        }

        json_decref(values);

        if (orbit_export_bytes(&ex, "\r\n", 2) != NGX_OK) {
            goto failed;
        }
    }

    json_decref(keys);

    orbit_api_finish(ar, orbit_export_send(ar, &ex));
    return;

failed:

    ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                  "orbit: contacts export failed");

    json_decref(keys);

    orbit_api_finish(ar, orbit_api_send_error(ar,
                         NGX_HTTP_INTERNAL_SERVER_ERROR, NULL));
}


/* one field, after a comma unless first */

static ngx_int_t
orbit_export_field(orbit_export_t *ex, const char *s, size_t len,
    unsigned flags, ngx_uint_t first)
{
    u_char  *p;
    size_t   n;

    n = orbit_csv_escape_len(s, len, flags) + (first ? 0 : 1);

    p = orbit_export_reserve(ex, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (!first) {
        *p++ = ',';
    }

    ex->b->last = (u_char *) orbit_csv_escape((char *) p, s, len, flags);
    ex->len += n;

    return NGX_OK;
}


static ngx_int_t
orbit_export_bytes(orbit_export_t *ex, const char *s, size_t len)
{
    u_char  *p;

    p = orbit_export_reserve(ex, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ex->b->last = ngx_cpymem(p, s, len);
    ex->len += len;

    return NGX_OK;
}


/* room for len more bytes: in the current buffer or a new one */

static u_char *
orbit_export_reserve(orbit_export_t *ex, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ex->b && (size_t) (ex->b->end - ex->b->last) >= len) {
        return ex->b->last;
    }

    b = ngx_create_temp_buf(ex->r->pool, ngx_max(len, ORBIT_EXPORT_CHUNK));
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(ex->r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *ex->last = cl;
    ex->last = &cl->next;
    ex->b = b;

    return b->last;
}


static ngx_int_t
orbit_export_send(orbit_api_req_t *ar, orbit_export_t *ex)
{
    ngx_int_t            rc;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ar->r;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Disposition");
    ngx_str_set(&h->value, "attachment; filename=\"contacts.csv\"");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ex->len;
    ngx_str_set(&r->headers_out.content_type, "text/csv; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/csv") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ex->b->last_buf = 1;
    ex->b->last_in_chain = 1;

    return ngx_http_output_filter(r, ex->out);
}


/* the import's body: text/csv, or a type a browser gives a .csv file */

static ngx_int_t
orbit_import_content_type(orbit_api_req_t *ar)
{
    ngx_str_t   *ct;
    ngx_uint_t   i;

    static ngx_str_t  types[] = {
        ngx_string("text/csv"),
        ngx_string("application/csv"),
        ngx_string("text/plain"),
        ngx_string("application/vnd.ms-excel"),
    };

    if (ar->r->headers_in.content_type == NULL) {
        return NGX_OK;
    }

    ct = &ar->r->headers_in.content_type->value;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (ct->len >= types[i].len
            && ngx_strncasecmp(ct->data, types[i].data, types[i].len) == 0
            && (ct->len == types[i].len || ct->data[types[i].len] == ';'
                || ct->data[types[i].len] == ' '))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static void
orbit_import_cleanup(void *data)
{
    orbit_import_t  *im = data;

    if (im->out.data) {
        ngx_free(im->out.data);
    }

    if (im->errors.data) {
        ngx_free(im->errors.data);
    }
}


/*
 * The parser's handler: the header first, then one data record a call.
 * A good row goes to im->out as {"row":N,"phone":...}; a bad one is
 * written too, then cut off again, its problems in im->errors.
 */

static int
orbit_import_row(const orbit_csv_row_t *row, void *data)
{
    size_t                i, start;
    ngx_str_t            *column;
    orbit_import_t       *im;
    const orbit_slice_t  *phone;
    u_char                buf[64], *p;

    im = data;

    if (!im->header) {
        return orbit_import_header(im, row);
    }

    /* a row of empty cells (",,,") is a blank line of a spreadsheet */

    if (row->error == ORBIT_CSV_ERR_NONE) {
        for (i = 0; i < row->nfields; i++) {
            if (row->fields[i].len) {
                break;
            }
        }

        if (i == row->nfields) {
            return 0;
        }
    }

    if (++im->rows > ORBIT_IMPORT_MAX_ROWS) {
        im->status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        ngx_snprintf(im->message, sizeof(im->message) - 1,
                     "the file has more than %d rows: split it%Z",
                     ORBIT_IMPORT_MAX_ROWS);
        return 1;
    }

    if (row->error != ORBIT_CSV_ERR_NONE) {
        column = (row->column >= 1 && row->column <= im->ncols)
                 ? &im->cols[row->column - 1].name : NULL;

        im->failed++;
        orbit_import_error(im, row->record, column,
                           orbit_csv_strerror(row->error));
        return im->nomem;
    }

    if (row->nfields > im->ncols) {
        p = ngx_snprintf(buf, sizeof(buf) - 1,
                         "the row has %uz fields, the header %uz",
                         row->nfields, im->ncols);
        *p = '\0';

        im->failed++;
        orbit_import_error(im, row->record, NULL, (char *) buf);
        return im->nomem;
    }

    im->row_failed = 0;
    start = im->out.len;
    phone = NULL;

    p = ngx_sprintf(buf, "%s{\"row\":%uL", im->valid ? "," : "",
                    row->record);
    orbit_import_raw(im, &im->out, (char *) buf, p - buf);

    for (i = 0; i < row->nfields; i++) {
        if (row->fields[i].len == 0
            || im->cols[i].kind == ORBIT_COL_IGNORE
            || im->cols[i].kind == ORBIT_COL_CUSTOM)
        {
            continue;
        }

        if (orbit_import_field(im, &im->cols[i], &row->fields[i],
                               row->record)
            == NGX_OK
            && im->cols[i].kind == ORBIT_COL_PHONE)
        {
            phone = &row->fields[i];
        }
    }

    orbit_import_custom(im, row);
    orbit_import_raw(im, &im->out, "}", 1);

    if (!im->row_failed) {
        if (phone == NULL) {
            orbit_import_error(im, row->record, &im->cols[im->phone].name,
                               "phone should not be empty");

        } else {
            orbit_import_seen(im, phone, row->record);
        }
    }

    if (im->row_failed) {
        im->out.len = start;
        im->failed++;

    } else {
        im->valid++;
    }

    return im->nomem;
}


static int
orbit_import_header(orbit_import_t *im, const orbit_csv_row_t *row)
{
    u_char                      *p;
    size_t                       i, j, ncustom;
    ngx_uint_t                   phone;
    orbit_slice_t                f, kf;
    orbit_import_col_t          *col;
    const orbit_import_known_t  *k;

    im->header = 1;

    if (row->error != ORBIT_CSV_ERR_NONE) {
        im->status = NGX_HTTP_BAD_REQUEST;
        ngx_snprintf(im->message, sizeof(im->message) - 1,
                     "the header row is not valid CSV: %s (column %uz)%Z",
                     orbit_csv_strerror(row->error), row->column);
        return 1;
    }

    im->cols = ngx_pcalloc(im->ar->r->pool,
                           row->nfields * sizeof(orbit_import_col_t));
    if (im->cols == NULL) {
        return 1;
    }

    im->ncols = row->nfields;
    phone = 0;
    ncustom = 0;

    for (i = 0; i < row->nfields; i++) {
        col = &im->cols[i];
        f = row->fields[i];
        orbit_csv_trim(&f);

        col->name.len = f.len;
        col->name.data = (u_char *) orbit_api_strdup_n(im->ar->r->pool,
                                                      (u_char *) f.data,
                                                      f.len);
        if (col->name.data == NULL) {
            im->nomem = 1;
            return 1;
        }

        /* an unnamed column (a spreadsheet's trailing one) is skipped */

        if (f.len == 0) {
            col->kind = ORBIT_COL_IGNORE;
            continue;
        }

        col->kind = ORBIT_COL_CUSTOM;

        for (k = orbit_import_known; k->name; k++) {
            if (orbit_csv_header_index(&f, 1, k->name, ngx_strlen(k->name))
                == 0)
            {
                col->kind = k->kind;
                break;
            }
        }

        /* its JSON key: "phone" for a known one, "Company" as written */

        kf.data = k->name ? k->name : f.data;
        kf.len = k->name ? ngx_strlen(k->name) : f.len;

        col->key.data = ngx_pnalloc(im->ar->r->pool,
                                    orbit_json_escaped_len(kf.data, kf.len)
                                    + 2);
        if (col->key.data == NULL) {
            im->nomem = 1;
            return 1;
        }

        col->key.data[0] = '"';
        p = (u_char *) orbit_json_escape((char *) col->key.data + 1,
                                         kf.data, kf.len);
        *p++ = '"';
        col->key.len = p - col->key.data;

        /* a known column twice, or a custom one of the very same name */

        for (j = 0; j < i; j++) {
            if (im->cols[j].kind != col->kind
                || col->kind == ORBIT_COL_IGNORE
                || (col->kind == ORBIT_COL_CUSTOM
                    && (im->cols[j].name.len != f.len
                        || ngx_memcmp(im->cols[j].name.data, f.data, f.len)
                           != 0)))
            {
                continue;
            }

            /* named when short: a cut name could end inside a character */

            im->status = NGX_HTTP_BAD_REQUEST;

            if (f.len <= 60) {
                ngx_snprintf(im->message, sizeof(im->message) - 1,
                             "the column \"%*s\" appears twice in the "
                             "header%Z", f.len, f.data);

            } else {
                ngx_snprintf(im->message, sizeof(im->message) - 1,
                             "column %uz has the name of column %uz%Z",
                             i + 1, j + 1);
            }

            return 1;
        }

        if (col->kind == ORBIT_COL_PHONE) {
            phone = 1;
            im->phone = i;

        } else if (col->kind == ORBIT_COL_CUSTOM) {
            if (orbit_utf8_chars((char *) f.data, f.len)
                > ORBIT_CONTACT_MAX_KEY)
            {
                im->status = NGX_HTTP_BAD_REQUEST;
                ngx_snprintf(im->message, sizeof(im->message) - 1,
                             "the name of column %uz is longer than %d "
                             "characters%Z", i + 1, ORBIT_CONTACT_MAX_KEY);
                return 1;
            }

            if (++ncustom > ORBIT_CONTACT_MAX_FIELDS) {
                im->status = NGX_HTTP_BAD_REQUEST;
                ngx_snprintf(im->message, sizeof(im->message) - 1,
                             "the header has more than %d custom field "
                             "columns%Z", ORBIT_CONTACT_MAX_FIELDS);
                return 1;
            }
        }
    }

    if (!phone) {
        im->status = NGX_HTTP_BAD_REQUEST;
        ngx_snprintf(im->message, sizeof(im->message) - 1,
                     "the header row has no phone column (the first row "
                     "must name the columns: phone,name,email,tags,"
                     "optedIn,...)%Z");
        return 1;
    }

    return 0;
}


/*
 * One non-empty cell of a known column: checked, then written as
 * ,"key":value.  NGX_DECLINED (and the problem reported) when bad.
 */

static ngx_int_t
orbit_import_field(orbit_import_t *im, orbit_import_col_t *col,
    const orbit_slice_t *f, uint64_t record)
{
    int          b;
    const char  *msg;

    if (memchr(f->data, '\0', f->len) != NULL) {
        orbit_import_error(im, record, &col->name,
                           "the field holds a NUL byte");
        return NGX_DECLINED;
    }

    msg = NULL;

    switch (col->kind) {

    case ORBIT_COL_PHONE:
        if (!orbit_valid_e164(f->data, f->len)) {
            msg = orbit_contact_e164;
        }
        break;

    case ORBIT_COL_NAME:
        if (orbit_utf8_chars((char *) f->data, f->len)
            > ORBIT_CONTACT_MAX_NAME)
        {
            msg = "name must be shorter than or equal to 200 characters";
        }
        break;

    case ORBIT_COL_EMAIL:
        if (!orbit_valid_email(f->data, f->len)) {
            msg = "email must be an email";
        }
        break;

    case ORBIT_COL_TAGS:
        orbit_import_tags(im, col, f, record);
        return NGX_OK;

    case ORBIT_COL_OPTED_IN:
        if (orbit_import_bool(f, &b) != NGX_OK) {
            orbit_import_error(im, record, &col->name,
                               "optedIn must be true or false (or yes/no, "
                               "1/0)");
            return NGX_DECLINED;
        }

        orbit_import_raw(im, &im->out, b ? ",\"optedIn\":true"
                                         : ",\"optedIn\":false",
                         b ? 15 : 16);
        return NGX_OK;

    default: /* ORBIT_COL_AVATAR_URL */
        if (f->len > ORBIT_CONTACT_MAX_URL
            || !((f->len > 8 && ngx_strncmp(f->data, "https://", 8) == 0)
                 || (f->len > 7 && ngx_strncmp(f->data, "http://", 7) == 0))
            || memchr(f->data, ' ', f->len) != NULL)
        {
            msg = "avatarUrl must be a URL address";
        }
        break;
    }

    if (msg) {
        orbit_import_error(im, record, &col->name, msg);
        return NGX_DECLINED;
    }

    orbit_import_raw(im, &im->out, ",", 1);
    orbit_import_raw(im, &im->out, (char *) col->key.data, col->key.len);
    orbit_import_raw(im, &im->out, ":", 1);
    orbit_import_str(im, &im->out, f->data, f->len);

    return NGX_OK;
}


/* the row's non-empty custom cells as ,"customFields":{"key":"value"} */

static void
orbit_import_custom(orbit_import_t *im, const orbit_csv_row_t *row)
{
    size_t                i;
    ngx_uint_t            n;
    orbit_import_col_t   *col;
    const orbit_slice_t  *f;

    n = 0;

    for (i = 0; i < row->nfields; i++) {
        col = &im->cols[i];
        f = &row->fields[i];

        if (f->len == 0 || col->kind != ORBIT_COL_CUSTOM) {
            continue;
        }

        if (memchr(f->data, '\0', f->len) != NULL) {
            orbit_import_error(im, row->record, &col->name,
                               "the field holds a NUL byte");
            continue;
        }

        if (orbit_utf8_chars((char *) f->data, f->len)
            > ORBIT_CONTACT_MAX_VALUE)
        {
            orbit_import_error(im, row->record, &col->name,
                               "a custom field must be shorter than or "
                               "equal to 1000 characters");
            continue;
        }

        if (n++ == 0) {
            orbit_import_raw(im, &im->out, ",\"customFields\":{", 17);

        } else {
            orbit_import_raw(im, &im->out, ",", 1);
        }

        orbit_import_raw(im, &im->out, (char *) col->key.data,
                         col->key.len);
        orbit_import_raw(im, &im->out, ":", 1);
        orbit_import_str(im, &im->out, f->data, f->len);
    }

    if (n) {
        orbit_import_raw(im, &im->out, "}", 1);
    }
}


/* "VIP; Lead|new" -> ,"tags":["VIP","Lead","new"] (trimmed, each once) */

static void
orbit_import_tags(orbit_import_t *im, orbit_import_col_t *col,
    const orbit_slice_t *f, uint64_t record)
{
    size_t          i, n;
    const char     *p, *end, *start;
    orbit_slice_t   tag, tags[ORBIT_CONTACT_MAX_TAGS];

    n = 0;
    end = f->data + f->len;

    for (start = f->data; start < end; start = p + 1) {

        for (p = start; p < end && *p != ';' && *p != '|'; p++) {
            /* void */
        }

        tag.data = start;
        tag.len = p - start;
        orbit_csv_trim(&tag);

        if (tag.len == 0) {
            continue;
        }

        if (!orbit_contacts_tag_valid((u_char *) tag.data, tag.len)) {
            orbit_import_error(im, record, &col->name,
                               "each tag must be 1 to 50 characters, "
                               "without control characters");
            return;
        }

        for (i = 0; i < n; i++) {
            if (tags[i].len == tag.len
                && ngx_memcmp(tags[i].data, tag.data, tag.len) == 0)
            {
                break;
            }
        }

        if (i < n) {
            continue;
        }

        if (n == ORBIT_CONTACT_MAX_TAGS) {
            orbit_import_error(im, record, &col->name,
                               "tags must contain no more than 50 "
                               "elements");
            return;
        }

        tags[n++] = tag;
    }

    /* only separators: as good as empty */

    for (i = 0; i < n; i++) {
        orbit_import_raw(im, &im->out, i ? "," : ",\"tags\":[",
                         i ? 1 : 9);
        orbit_import_str(im, &im->out, tags[i].data, tags[i].len);
    }

    if (n) {
        orbit_import_raw(im, &im->out, "]", 1);
    }
}


static ngx_int_t
orbit_import_bool(const orbit_slice_t *f, int *value)
{
    ngx_uint_t  i;

    static const struct {
        const char  *text;
        int          value;
    } words[] = {
        { "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 },
        { "1", 1 }, { "0", 0 }, { "y", 1 }, { "n", 0 }, { NULL, 0 }
    };

    for (i = 0; words[i].text; i++) {
        if (f->len == ngx_strlen(words[i].text)
            && ngx_strncasecmp((u_char *) f->data, (u_char *) words[i].text,
                               f->len) == 0)
        {
            *value = words[i].value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* a problem of a row: counted by the caller, listed up to a limit */

static void
orbit_import_error(orbit_import_t *im, uint64_t record,
    const ngx_str_t *column, const char *message)
{
    u_char  buf[64], *p;

    im->row_failed = 1;

    if (im->nerrors++ >= ORBIT_IMPORT_MAX_ERRORS) {
        return;
    }

    p = ngx_sprintf(buf, "%s{\"row\":%uL", im->nerrors > 1 ? "," : "",
                    record);
    orbit_import_raw(im, &im->errors, (char *) buf, p - buf);

    if (column && column->len) {
        orbit_import_raw(im, &im->errors, ",\"column\":", 10);
        orbit_import_str(im, &im->errors, (char *) column->data,
                         column->len);
    }

    orbit_import_raw(im, &im->errors, ",\"message\":", 11);
    orbit_import_str(im, &im->errors, message, ngx_strlen(message));
    orbit_import_raw(im, &im->errors, "}", 1);
}


/*
 * A phone twice in one file is an error of the later row: which of two
 * rows the user meant cannot be guessed, and one statement may not
 * upsert a row twice.
 */

static void
orbit_import_seen(orbit_import_t *im, const orbit_slice_t *f,
    uint64_t record)
{
    uint32_t               hash;
    ngx_str_t              phone;
    orbit_import_phone_t  *p;
    u_char                 msg[80], *end;

    phone.data = (u_char *) f->data;
    phone.len = f->len;

    hash = ngx_crc32_short(phone.data, phone.len);

    p = (orbit_import_phone_t *) ngx_str_rbtree_lookup(&im->phones, &phone,
                                                        hash);

    if (p != NULL) {
        end = ngx_snprintf(msg, sizeof(msg) - 1,
                           "the phone is already on row %uL", p->row);
        *end = '\0';
        orbit_import_error(im, record, &im->cols[im->phone].name,
                           (char *) msg);
        return;
    }

    /* the field is the parser's until the call returns: keep a copy */

    p = ngx_palloc(im->ar->r->pool, sizeof(orbit_import_phone_t) + f->len);
    if (p == NULL) {
        im->nomem = 1;
        return;
    }

    p->sn.str.data = (u_char *) (p + 1);
    p->sn.str.len = f->len;
    ngx_memcpy(p->sn.str.data, f->data, f->len);
    p->sn.node.key = hash;
    p->row = record;

    ngx_rbtree_insert(&im->phones, &p->sn.node);
}


/* room for n more bytes in b, which doubles as needed */

static u_char *
orbit_import_reserve(orbit_import_t *im, orbit_import_buf_t *b, size_t n)
{
    u_char  *p;
    size_t   size;

    if (im->nomem) {
        return NULL;
    }

    if (b->size - b->len >= n) {
        return b->data + b->len;
    }

    size = ngx_max(ngx_max(2 * b->size, b->len + n), 16384);

    p = ngx_alloc(size, im->ar->r->connection->log);
    if (p == NULL) {
        im->nomem = 1;
        return NULL;
    }

    if (b->data) {
        ngx_memcpy(p, b->data, b->len);
        ngx_free(b->data);
    }

    b->data = p;
    b->size = size;

    return p + b->len;
}


static void
orbit_import_raw(orbit_import_t *im, orbit_import_buf_t *b, const char *s,
    size_t len)
{
    u_char  *p;

    p = orbit_import_reserve(im, b, len);

    if (p != NULL) {
        ngx_memcpy(p, s, len);
        b->len += len;
    }
}


/* s as a JSON string, quotes included */

static void
orbit_import_str(orbit_import_t *im, orbit_import_buf_t *b, const char *s,
    size_t len)
{
    u_char  *p, *end;

    p = orbit_import_reserve(im, b, 6 * len + 2);

    if (p != NULL) {
        *p++ = '"';
        end = (u_char *) orbit_json_escape((char *) p, s, len);
        *end++ = '"';
        b->len = end - b->data;
    }
}


/*
 * orbit_api_validate() plus what its table cannot say: tag and name
 * lengths in characters, tag and customFields contents.  Every message
 * in one 400, as the ValidationPipe does.
 */

static ngx_int_t
orbit_contacts_check(orbit_api_req_t *ar, const orbit_v_field_t *fields)
{
    orbit_v_errors_t  errs;

    orbit_validate(ar->body, fields, &errs);

    if (ar->body != NULL && json_is_object(ar->body)) {
        orbit_contacts_check_more(ar->body, &errs);
    }

    if (errs.n == 0) {
        return NGX_OK;
    }

    return orbit_api_refuse(ar, &errs);
}


static void
orbit_contacts_check_more(json_t *body, orbit_v_errors_t *errs)
{
    size_t       i, len;
    json_t      *v, *item;
    const char  *key, *s;
    char         msg[128];

    v = json_object_get(body, "name");

    if (json_is_string(v)
        && orbit_utf8_chars((char *) json_string_value(v),
                                json_string_length(v))
           > ORBIT_CONTACT_MAX_NAME)
    {
        orbit_validate_add(errs, "name must be shorter than or equal "
                                       "to 200 characters");
    }

    v = json_object_get(body, "tags");

    if (json_is_array(v)) {
        if (json_array_size(v) > ORBIT_CONTACT_MAX_TAGS) {
            orbit_validate_add(errs, "tags must contain no more than "
                                           "50 elements");
        }

        json_array_foreach(v, i, item) {
            if (!json_is_string(item)) {
                break;              /* already said */
            }

            if (!orbit_contacts_tag_valid(
                    (u_char *) json_string_value(item),
                    json_string_length(item)))
            {
                orbit_validate_add(errs, "each value in tags must be "
                                         "1 to 50 characters, without ';', "
                                         "'|' or control characters");
                break;
            }
        }
    }

    v = json_object_get(body, "customFields");

    if (!json_is_object(v)
        || json_object_size(v) > ORBIT_CONTACT_MAX_FIELDS)
    {
        return;
    }

    json_object_foreach(v, key, item) {
        len = ngx_strlen(key);

        if (len == 0
            || orbit_utf8_chars((char *) key, len)
               > ORBIT_CONTACT_MAX_KEY)
        {
            orbit_validate_add(errs, "customFields keys must be 1 to "
                                           "100 characters");
            return;
        }

        if (orbit_contacts_reserved(key)) {
            ngx_snprintf((u_char *) msg, sizeof(msg),
                         "customFields key %*s is reserved (a column of "
                         "the CSV files)%Z", ngx_min(len, 40), key);
            orbit_validate_add(errs, msg);
            return;
        }

        if (json_is_string(item)) {
            s = json_string_value(item);

            if (orbit_utf8_chars((char *) s, json_string_length(item))
                > ORBIT_CONTACT_MAX_VALUE)
            {
                orbit_validate_add(errs, "customFields values must be "
                                         "shorter than or equal to 1000 "
                                         "characters");
                return;
            }

        } else if (json_is_object(item) || json_is_array(item)) {
            orbit_validate_add(errs, "customFields values must be "
                                           "strings, numbers, booleans or "
                                           "null");
            return;
        }
    }
}


/* the validated JSON body as a jsonb parameter ({} when there is none) */

static const char *
orbit_contacts_body_param(orbit_api_req_t *ar)
{
    ngx_str_t  body;

    if (orbit_api_raw_body(ar, &body) != NGX_OK) {
        return NULL;
    }

    return body.len ? (const char *) body.data : "{}";
}


/*
 * 1 to 50 characters, no control characters, and no ';' or '|': those
 * separate the tags of a CSV cell, so a tag holding one could not come
 * back through an export and an import.
 */

static ngx_int_t
orbit_contacts_tag_valid(const u_char *s, size_t len)
{
    size_t  i;

    if (len == 0 || orbit_utf8_chars((char *) s, len) > ORBIT_CONTACT_MAX_TAG) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == ';' || s[i] == '|') {
            return 0;
        }
    }

    return 1;
}


/* a custom field key that would collide with a column of the CSV files */

static ngx_int_t
orbit_contacts_reserved(const char *key)
{
    size_t                       len;
    const orbit_import_known_t  *k;

    len = ngx_strlen(key);

    for (k = orbit_import_known; k->name; k++) {
        if (len == ngx_strlen(k->name)
            && ngx_strncasecmp((u_char *) key, (u_char *) k->name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * ?name=, decoded as a form field: "+" is a space (browsers' URLSearchParams
 * and the seed's Express agree), %2B a plus; spaces around are dropped.
 */

static char *
orbit_contacts_arg(orbit_api_req_t *ar, const char *name)
{
    u_char     *dst, *src, *p, *end;
    ngx_str_t   value;

    if (ngx_http_arg(ar->r, (u_char *) name, ngx_strlen(name), &value)
        != NGX_OK)
    {
        return NULL;
    }

    src = ngx_pnalloc(ar->r->pool, value.len);
    p = ngx_pnalloc(ar->r->pool, value.len + 1);

    if (src == NULL || p == NULL) {
        return NULL;
    }

    for (end = src; end < src + value.len; end++) {
        *end = (value.data[end - src] == '+') ? ' '
                                              : value.data[end - src];
    }

    dst = p;
    ngx_unescape_uri(&dst, &src, value.len, NGX_UNESCAPE_URI);

    while (dst > p && (dst[-1] == ' ' || dst[-1] == '\t')) {
        dst--;
    }

    *dst = '\0';

    while (*p == ' ' || *p == '\t') {
        p++;
    }

    return (char *) p;
}


/* %term% for LIKE, with \ % _ of the term taken literally */

static char *
orbit_contacts_like(ngx_pool_t *pool, const char *s)
{
    u_char  *p, *dst;
    size_t   len;

    len = ngx_strlen(s);

    p = ngx_pnalloc(pool, 2 * len + 3);
    if (p == NULL) {
        return NULL;
    }

    dst = p;
    *dst++ = '%';

    for ( /* void */ ; *s; s++) {
        if (*s == '\\' || *s == '%' || *s == '_') {
            *dst++ = '\\';
        }

        *dst++ = *s;
    }

    *dst++ = '%';
    *dst = '\0';

    return (char *) p;
}
