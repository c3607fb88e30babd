/*
 * OrbitDesk core: RFC 4180 CSV for the contact import and export.
 *
 * Reading.  orbit_csv_init() a parser, set its limits and flags, then
 * orbit_csv_feed() it chunks of any size (split anywhere, even inside a
 * UTF-8 sequence or a CRLF) and orbit_csv_finish() it at the end of the
 * file; orbit_csv_free() releases its buffers.  The handler is called once
 * per record, in order, with the fields or with the reason the record is
 * bad: the import writes its per-row report from that.
 *
 *   - the separator is ',', records end with CRLF, LF or a lone CR;
 *   - a field may be quoted: "a ""b"", c" is  a "b", c  and a quoted
 *     field may span lines (the record number counts records, not lines);
 *   - a UTF-8 BOM at the start of the input is skipped;
 *   - a blank line (no byte at all between two line ends, or with
 *     ORBIT_CSV_TRIM nothing but spaces and tabs) is, by RFC 4180, a
 *     record of one empty field: it is skipped, because that is what
 *     people who leave an empty line in a spreadsheet expect, but it still
 *     takes a record number, so that numbers match the spreadsheet's rows;
 *     a line of "" is a record of one empty field and is delivered;
 *   - every field is checked to be UTF-8 (no overlong forms, surrogates
 *     or code points past U+10FFFF).
 *
 * A bad record is reported with its first error and the column (1-based)
 * where it happened; the parser then reads on to the end of that record,
 * leniently and without keeping anything, and goes on with the next one.
 * The only errors that stop the parser are running out of memory and the
 * handler asking to stop.  The total number of rows is the caller's to
 * limit: return non-zero from the handler.
 *
 * Memory.  Nothing is allocated per field.  The fields of the current
 * record are copied, unescaped, into one buffer owned by the parser; it
 * starts small, doubles when a record does not fit and never grows past
 * max_record bytes (a record that would is reported as too long).  The
 * field pointers handed to the handler point into that buffer and are
 * valid only during the call: copy what you keep.  They are not
 * nul-terminated.  The caller's chunks are not referenced after
 * orbit_csv_feed() returns.
 *
 * Writing.  orbit_csv_escape() writes one field; the caller puts ',' between
 * fields and "\r\n" after each record.  A field is quoted when it holds a
 * comma, a quote, CR or LF, starts or ends with a space or a tab, or
 * starts with U+FEFF (which first in a file would be taken for a BOM).
 * Unless ORBIT_CSV_ESC_RAW is given, a field starting with = + - @ TAB or
 * CR gets a leading single quote, as OWASP's "CSV Injection" page advises,
 * so that a spreadsheet shows it as text instead of running it as a
 * formula (=HYPERLINK(...), =cmd|...).  A phone column sets
 * ORBIT_CSV_ESC_PHONE so that an E.164 number, "+" and digits only, is
 * written as it is; anything else starting with "+" in it is still
 * guarded.  Importing an exported file keeps those quotes: the parser does
 * not guess which apostrophes were added.
 */

#ifndef _ORBIT_CSV_H_INCLUDED_
#define _ORBIT_CSV_H_INCLUDED_


#include "orbit_core.h"


#define ORBIT_CSV_MAX_FIELD    65536          /* bytes in a field */
#define ORBIT_CSV_MAX_FIELDS   256            /* fields in a record */
#define ORBIT_CSV_MAX_RECORD   (1024 * 1024)  /* bytes kept for a record */

/* parser flags */
#define ORBIT_CSV_TRIM         0x01  /* drop spaces and tabs around fields */

/* orbit_csv_escape() flags */
#define ORBIT_CSV_ESC_RAW      0x01  /* no formula guard (ids, numbers) */
#define ORBIT_CSV_ESC_PHONE    0x02  /* "+" and digits only is not guarded */
#define ORBIT_CSV_ESC_QUOTE    0x04  /* always quote (a lone empty field) */


typedef enum {
    ORBIT_CSV_OK = 0,
    ORBIT_CSV_STOPPED,          /* the handler returned non-zero */
    ORBIT_CSV_NOMEM             /* the record buffer could not grow */
} orbit_csv_rc_e;

/* why a record is bad */
typedef enum {
    ORBIT_CSV_ERR_NONE = 0,
    ORBIT_CSV_ERR_QUOTE,        /* a quote inside an unquoted field */
    ORBIT_CSV_ERR_AFTER_QUOTE,  /* something other than , or EOL after "" */
    ORBIT_CSV_ERR_UNTERMINATED, /* the input ends inside a quoted field */
    ORBIT_CSV_ERR_FIELD_LEN,    /* a field over max_field bytes */
    ORBIT_CSV_ERR_FIELDS,       /* over max_fields fields */
    ORBIT_CSV_ERR_RECORD_LEN,   /* a record over max_record bytes */
    ORBIT_CSV_ERR_UTF8          /* a field that is not UTF-8 */
} orbit_csv_err_e;

typedef struct {
    /*
     * The fields, unescaped; when error is set, only those before the
     * column of the error (possibly none: then fields may be NULL).
     */
    const orbit_slice_t  *fields;
    size_t                nfields;

    uint64_t              record;    /* 1-based, blank lines counted */
    uint64_t              offset;    /* of its first byte, BOM counted */

    orbit_csv_err_e       error;
    size_t                column;    /* 1-based column of the error */
} orbit_csv_row_t;

/* returns 0 to go on, anything else to stop */
typedef int (*orbit_csv_row_pt)(const orbit_csv_row_t *row, void *data);

typedef struct {
    /*
     * Set by orbit_csv_init(); the limits and flags may be changed before
     * the first orbit_csv_feed().  A limit of 0 is the default.
     */
    orbit_csv_row_pt      handler;
    void                 *data;
    size_t                max_field;
    size_t                max_fields;
    size_t                max_record;
    unsigned              flags;

    /* private */
    char                 *buf;
    size_t                buf_len;
    size_t                buf_size;
    size_t                field_start;
    orbit_slice_t        *fields;
    size_t                nfields;
    size_t                fields_size;
    size_t                col;
    uint64_t              offset;
    uint64_t              record;
    uint64_t              record_offset;
    orbit_csv_err_e       error;
    size_t                error_col;
    orbit_csv_rc_e        rc;
    unsigned              state:3;
    unsigned              bom:2;
    unsigned              bom_done:1;
    unsigned              cr:1;
    unsigned              in_record:1;
    unsigned              quoted:1;
} orbit_csv_parser_t;


void orbit_csv_init(orbit_csv_parser_t *p, orbit_csv_row_pt handler,
    void *data);
orbit_csv_rc_e orbit_csv_feed(orbit_csv_parser_t *p, const char *data,
    size_t len);

/* the end of the input: delivers the last record if it has no line end */
orbit_csv_rc_e orbit_csv_finish(orbit_csv_parser_t *p);
void orbit_csv_free(orbit_csv_parser_t *p);

/* "quote inside an unquoted field", ... for the import report */
const char *orbit_csv_strerror(orbit_csv_err_e err);


/* drops spaces and tabs at both ends of f */
void orbit_csv_trim(orbit_slice_t *f);

/*
 * The 0-based index of the first header field equal to name, ignoring
 * ASCII case and spaces and tabs around the field; -1 if there is none.
 */
int orbit_csv_header_index(const orbit_slice_t *header, size_t n,
    const char *name, size_t len);


/* the length orbit_csv_escape() writes for src */
size_t orbit_csv_escape_len(const char *src, size_t len, unsigned flags);

/* writes src as one CSV field at dst; returns the end */
char *orbit_csv_escape(char *dst, const char *src, size_t len,
    unsigned flags);


#endif /* _ORBIT_CSV_H_INCLUDED_ */
