/*
 * OrbitDesk core: e-mail messages (RFC 5322 + MIME), built and parsed.
 *
 * Building (orbit_mime_build): one reply as the Email channel sends it,
 * From, To, Subject, Date, Message-ID, In-Reply-To, References, then a
 * multipart/alternative of text/plain and text/html, both UTF-8 in
 * quoted-printable.  Nothing the caller gives reaches a header raw:
 * display names and the subject become RFC 2047 encoded words whenever
 * they are not plain printable ASCII (so a CR or LF never does), and
 * addresses and message ids are refused (NULL) or dropped (references)
 * unless they are made of the characters those may hold.
 *
 * Parsing (orbit_mime_parse): the headers (folded lines, encoded words in
 * any of the charsets below), the first address of From, the ids of
 * Message-ID, In-Reply-To and References, and the body: the multipart tree
 * walked (at most ORBIT_MIME_DEPTH levels and ORBIT_MIME_PARTS parts),
 * quoted-printable and base64 decoded, UTF-8, US-ASCII, ISO-8859-1 and
 * windows-1252 converted to UTF-8 (an unknown charset is read as UTF-8;
 * invalid sequences become U+FFFD).  text is the first text/plain part,
 * else the first text/html part stripped of its tags; the other parts are
 * listed as attachments (name, type, decoded size).  Malformed input is
 * read as far as it makes sense; the parser never reads outside data.
 *
 * Every string out is nul-terminated UTF-8 in malloc()ed memory, released
 * by orbit_mime_free().
 */

#ifndef _ORBIT_MIME_H_INCLUDED_
#define _ORBIT_MIME_H_INCLUDED_


#include <stddef.h>
#include <time.h>


#define ORBIT_MIME_DEPTH      8
#define ORBIT_MIME_PARTS      64
#define ORBIT_MIME_REFS       20        /* References kept, the newest */
#define ORBIT_MIME_TEXT_MAX   (256 * 1024)


typedef struct {
    const char   *from_name;    /* UTF-8, or NULL */
    const char   *from_addr;
    const char   *to_name;      /* UTF-8, or NULL */
    const char   *to_addr;
    const char   *subject;      /* UTF-8 */
    const char   *message_id;   /* "<id@domain>" */
    const char   *in_reply_to;  /* "<...>", or NULL */
    const char   *references;   /* "<a> <b>", or NULL */
    const char   *text;         /* UTF-8 */
    const char   *html;         /* NULL: the text, escaped */
    const char   *boundary;     /* unique per message: random */
    time_t        date;
} orbit_mime_out_t;


typedef struct {
    char         *name;         /* "" when it has none */
    char         *type;         /* "image/png" */
    size_t        size;         /* decoded bytes */
} orbit_mime_att_t;


typedef struct {
    char              *message_id;   /* "<...>", or NULL */
    char              *in_reply_to;  /* the first id, or NULL */
    char              *references;   /* "<a> <b>", or NULL */
    char              *subject;      /* "" when none */
    char              *from_name;    /* "" when none */
    char              *from_addr;    /* lowercased; NULL when none */
    char              *to;           /* the header, decoded; or NULL */
    char              *cc;
    char              *text;         /* "" when none */
    char              *html;         /* the first text/html, or NULL */
    orbit_mime_att_t  *atts;
    size_t             natts;
    time_t             date;         /* 0: none or unreadable */
} orbit_mime_t;


/* the message with CRLF line ends in *out (malloc()ed), its length in
 * *len; -1: an address or id that cannot be sent, or out of memory */
int orbit_mime_build(const orbit_mime_out_t *m, char **out, size_t *len);

/* 0, or -1 when out of memory (m is then freed already) */
int orbit_mime_parse(const char *data, size_t len, orbit_mime_t *m);
void orbit_mime_free(orbit_mime_t *m);

/*
 * Helpers, exported for the tests and the adapter: an address that may go
 * into an envelope and a header (local@domain, printable, no specials
 * that need quoting); an id "<...>" that may go into a header.
 */
int orbit_mime_addr_ok(const char *addr);
int orbit_mime_id_ok(const char *id, size_t len);

/* RFC 2047: s as encoded words when it needs them, else as it is, in a
 * header that starts col characters in; malloc()ed; NULL when out of
 * memory */
char *orbit_mime_encode_words(const char *s, size_t col);

/* decodes the encoded words of a header value to UTF-8; malloc()ed */
char *orbit_mime_decode_words(const char *s, size_t len);


#endif /* _ORBIT_MIME_H_INCLUDED_ */
