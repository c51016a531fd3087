/* The shared-memory log's layout and the few operations on it that must be
 * exact about memory ordering. Included by _shared_c.pxi; docs/shared.md is
 * the description.
 *
 * Segment: one page of header, then `capacity` records of `record_size`
 * bytes. The record for seq s (1, 2, ...) lives in slot (s - 1) % capacity.
 *
 * A record's first word is its stamp: 2*s while record s is committed,
 * 2*s + 1 while a writer is filling it for s, 0 when never written. A
 * writer claims s with a fetch-add on the header's `claimed`, moves the
 * stamp to odd (only upward: a writer that finds a newer stamp gives its
 * slot up), writes the body with its checksum, then commits with a
 * compare-and-swap from its odd stamp to its even one (release), so it
 * never commits over a writer that lapped it. A reader copies a record
 * between two reads of its stamp and checks the checksum: a record torn
 * by a lapping writer is refused, never delivered.
 */
#ifndef FASTOPSLOG_SHM_H
#define FASTOPSLOG_SHM_H

#include <stdint.h>
#include <string.h>

#define FOL_MAGIC 0x474f4c53504f4c46ULL /* "FLOPSLOG" little-endian */
#define FOL_VERSION 1u
#define FOL_HEADER_SIZE 4096u
/* Fixed part of a record; the strings follow it. */
#define FOL_FIXED 128u
#define FOL_N_STR 5

typedef struct {
    uint64_t magic;          /* stored last by the creator (release): the ready mark */
    uint32_t version;
    uint32_t header_size;
    uint32_t record_size;
    uint32_t creator_pid;
    uint64_t capacity;
    int64_t created_us;
    char _pad1[64 - 40];
    /* Its own cache line: every publish in every process touches it. */
    uint64_t claimed;        /* seqs handed out; the newest claimed seq */
    char _pad2[64 - 8];
} fol_header;

typedef struct {
    uint64_t stamp;
    uint64_t checksum;       /* over bytes [16, used) and the seq */
    int64_t time_us;
    int64_t ints[9];         /* status, latency_ms, account_id, group_id, api_key_id,
                                user_id, turns, prompt_chars, upstream_status */
    uint32_t used;           /* bytes of the record in use, FOL_FIXED + string bytes */
    uint8_t stream;
    uint8_t truncated;       /* bit i: string i was cut */
    uint16_t _pad;
    uint32_t lens[FOL_N_STR]; /* method, path, model, error_message, error_detail */
    char _pad2[4];
} fol_record;

_Static_assert(sizeof(fol_record) == FOL_FIXED, "fol_record is FOL_FIXED bytes");
_Static_assert(sizeof(fol_header) <= FOL_HEADER_SIZE, "the header fits its page");

/* Indexes into fol_record.ints, named as the filter reads them. */
#define FOL_STATUS 0
#define FOL_LATENCY 1
#define FOL_ACCOUNT 2
#define FOL_GROUP 3

static inline fol_record *fol_slot(fol_header *h, uint64_t seq) {
    return (fol_record *)((char *)h + FOL_HEADER_SIZE +
                          ((seq - 1) % h->capacity) * (uint64_t)h->record_size);
}

static inline uint64_t fol_load_acquire(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* The creator's last store: everything before it is visible to whoever
 * sees the magic. */
static inline void fol_mark_ready(fol_header *h) {
    __atomic_store_n(&h->magic, FOL_MAGIC, __ATOMIC_RELEASE);
}

static inline uint64_t fol_claimed(fol_header *h) {
    return __atomic_load_n(&h->claimed, __ATOMIC_ACQUIRE);
}

static inline uint64_t fol_claim(fol_header *h) {
    return __atomic_add_fetch(&h->claimed, 1, __ATOMIC_RELAXED);
}

static inline uint64_t fol_mix(uint64_t h, uint64_t w) {
    h ^= w;
    h *= 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

/* The checksum of record `r` for `seq`: binds the body to the seq, so a
 * stale or torn body fails it. `used` is read from the (private) copy.
 * Two running sums (Fletcher's, over 64-bit words), mixed at the end: one
 * add each per word, so it costs the writer little, yet a body made of two
 * writers' bytes sums differently unless they happen to cancel out. */
static inline uint64_t fol_checksum(const fol_record *r, uint64_t seq) {
    const char *p = (const char *)r + 16;
    uint32_t n = r->used - 16, i;
    uint64_t a = seq, b = 0x243f6a8885a308d3ULL, w;
    for (i = 0; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        a += w;
        b += a;
    }
    if (i < n) {
        w = 0;
        memcpy(&w, p + i, n - i);
        a += w;
        b += a;
    }
    return fol_mix(fol_mix(fol_mix(0, a), b), n);
}

/* Move the slot's stamp up to "writing seq"; 0 when a newer writer already
 * holds the slot (this record is then given up). */
static inline int fol_begin(fol_record *r, uint64_t seq) {
    uint64_t cur = __atomic_load_n(&r->stamp, __ATOMIC_RELAXED);
    while (cur < 2 * seq) {
        if (__atomic_compare_exchange_n(&r->stamp, &cur, 2 * seq + 1, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            /* The odd stamp is visible before any byte of the body. */
            __atomic_thread_fence(__ATOMIC_RELEASE);
            return 1;
        }
    }
    return 0;
}

/* Publish the body: release, and only if no lapping writer took the slot. */
static inline void fol_commit(fol_record *r, uint64_t seq) {
    uint64_t odd = 2 * seq + 1;
    __atomic_compare_exchange_n(&r->stamp, &odd, 2 * seq, 0, __ATOMIC_RELEASE,
                                __ATOMIC_RELAXED);
}

/* Reader: copy record `seq` into `out` (record_size bytes). Returns
 *   1  copied and verified
 *   0  not there yet (never written for seq, or being written)
 *  -1  overwritten by a newer seq (lapped)
 *  -2  torn or corrupt (checksum or length wrong) */
static inline int fol_read(fol_header *h, uint64_t seq, fol_record *out) {
    fol_record *r = fol_slot(h, seq);
    uint64_t s1 = fol_load_acquire(&r->stamp), s2;
    uint32_t used;
    if (s1 > 2 * seq + 1)
        return -1;
    if (s1 != 2 * seq)
        return 0;
    memcpy(out, r, FOL_FIXED);
    used = out->used;
    if (used < FOL_FIXED || used > h->record_size)
        used = FOL_FIXED; /* checked below, after the stamp */
    memcpy((char *)out + FOL_FIXED, (char *)r + FOL_FIXED, used - FOL_FIXED);
    /* The copy is complete before the stamp is read again. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    s2 = __atomic_load_n(&r->stamp, __ATOMIC_RELAXED);
    if (s2 != s1)
        return s2 > 2 * seq + 1 ? -1 : -2;
    if (out->used < FOL_FIXED || out->used > h->record_size)
        return -2;
    if (fol_checksum(out, seq) != out->checksum)
        return -2;
    return 1;
}

#endif
