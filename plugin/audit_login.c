/*
  audit_login: a MariaDB audit plugin that writes every login and login
  attempt to a log file, one JSON object per line, in the format of the
  original audit_login plugin (Outbrain, 2013), so that every consumer of
  that format keeps working:

    {"ts":"2026-11-25 10:00:00","type":"successful_login","myhost":"db-1",
     "thread":"42","user":"app","priv_user":"app","host":"web-1","ip":"10.0.0.7",
     "escaped":true}

  Unlike the original, every string is JSON-escaped, so each line is valid
  JSON and nothing a client sends (a user name is chosen by the client) can
  forge a field or a line:
    - " and \ are escaped as \" and \\;
    - control characters as \b \f \n \r \t or \u00XX;
    - valid UTF-8 is written as is;
    - a byte that is not part of valid UTF-8 is written as \u00XX with XX
      from 80 to ff. Since valid UTF-8 is never escaped, such an escape can
      only stand for that raw byte: auditlogin reads it back as the byte.
  A NULL string (a connection that sent no credentials: a port probe) is
  written as JSON null, so it is told apart from a user literally named
  "(null)", which the original could not. Every record ends with the marker
  "escaped":true, which the original plugin never writes: a consumer knows
  from it that the strings are escaped and may decode them, and reads a
  record without it byte for byte, as the original's (an unescaped record
  that happens to be valid JSON must not be decoded: a client choosing the
  user name \u0072oot would otherwise pass for root).

  One write() per record on a descriptor opened with O_APPEND, so records of
  concurrent logins never interleave. SET GLOBAL audit_login_reopen=ON
  reopens the file (rename it first: logrotate "create" then works; no
  copytruncate needed), and so does changing audit_login_file.

  The log must be a regular file: a FIFO, socket or device is refused (its
  reader could stop and hold every login), and so is a path that cannot be
  opened; SET GLOBAL audit_login_file then fails with an error and the
  variable keeps naming the file being written. The file is opened with
  O_NONBLOCK, so opening never waits. A write that fails or is cut short
  (a full disk) is counted in Audit_login_write_errors and reported in the
  error log (the first at once, then at most once a minute with a count);
  the next record starts on a fresh line, so no record is glued to a
  fragment.

  Logins never wait on the file: a login formats its record and queues it
  for the plugin's writer thread, which does the write(2). A write that does
  not return (a hung network file system) holds only that thread: records
  queue up to audit_login_buffer_size bytes (1 MiB); a login that finds the
  queue full waits at most audit_login_wait_ms (100 ms) for room, then its
  record is dropped, counted in Audit_login_records_dropped and reported in
  the error log (at most once a minute). SET GLOBAL audit_login_file and
  audit_login_reopen never wait for the writer either: it moves to the new
  file before its next record (after the stuck write returns). UNINSTALL
  writes what is queued; a write stuck for 5 s is cancelled (interruptible
  network and FUSE file systems return).

  System variables: audit_login_enabled, audit_login_skip_users (comma
  separated, spaces around names ignored, at most 64 names and 1023
  characters: longer values are refused), audit_login_file,
  audit_login_reopen, audit_login_buffer_size, audit_login_wait_ms.
  Status variables: Audit_login_records_written, Audit_login_write_errors,
  Audit_login_records_dropped, Audit_login_buffer_bytes,
  Audit_login_successful_logins, Audit_login_failed_logins.

  Released under the GPL (v2), like the original and the server's API.
*/

#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mysql/plugin.h>
#include <mysql/plugin_audit.h>

#define MAX_SKIP_USERS 64
#define HOSTNAME_LEN 256

static char enabled = 1;
static char *skip_users_value = NULL;
static char *file_value = NULL;
static char reopen_value = 0;

static unsigned long long records_written = 0;
static unsigned long long write_errors = 0;
static unsigned long long successful_logins = 0;
static unsigned long long failed_logins = 0;

static unsigned long long records_dropped = 0;
static unsigned long long queued_bytes = 0; /* records waiting for the writer thread */

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER; /* skip list */

/* The records go through a queue to one writer thread, so that no login
   ever waits on the file: a login that finds the queue full waits at most
   audit_login_wait_ms for room, then its record is dropped (counted and
   reported). Only the writer thread writes to or closes fd; a reopen hands
   it new_fd, which it switches to before its next record. */
struct rec {
  struct rec *next;
  size_t len;
  char data[];
};
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER; /* the queue, fd handover, stop */
static pthread_cond_t qwork = PTHREAD_COND_INITIALIZER; /* a record, a new fd, or stop */
static pthread_cond_t qroom = PTHREAD_COND_INITIALIZER; /* the writer freed room */
static struct rec *qhead = NULL, *qtail = NULL;
static unsigned long long qbytes = 0;
static int fd = -1;     /* the writer's file (the writer's own once it runs) */
static int new_fd = -1; /* a reopened file waiting for the writer, or -1 */
static int stopping = 0;
static int writer_running = 0;
static pthread_t writer;
static unsigned long buffer_size = 1 << 20; /* audit_login_buffer_size */
static unsigned long wait_ms = 100;         /* audit_login_wait_ms */
static int broken = 0;            /* the last write failed or was short: start the next record on a new line */
static time_t last_report = 0;    /* write failures reported to the error log (once a minute) */
static unsigned long long unreported = 0;
static char myhost[HOSTNAME_LEN];
static char skip_buf[1024];
static char *skip_users[MAX_SKIP_USERS];
static int num_skip_users = 0;

/* A growable buffer for one record. */
struct buf {
  char *p;
  size_t len, cap;
  char stack[2048];
};

static void buf_init(struct buf *b) {
  b->p = b->stack;
  b->len = 0;
  b->cap = sizeof(b->stack);
}

static int buf_grow(struct buf *b, size_t n) {
  size_t cap;
  char *np;
  if (b->len + n <= b->cap) return 0;
  cap = b->cap * 2;
  while (cap < b->len + n) cap *= 2;
  if (b->p == b->stack) {
    np = malloc(cap);
    if (np) memcpy(np, b->p, b->len);
  } else {
    np = realloc(b->p, cap);
  }
  if (!np) return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

static void buf_free(struct buf *b) {
  if (b->p != b->stack) free(b->p);
}

static int put(struct buf *b, const char *s, size_t n) {
  if (buf_grow(b, n)) return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

static int puts_(struct buf *b, const char *s) { return put(b, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned int c = s[0];
  size_t need, i;
  unsigned int cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { need = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { need = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 4; cp = c & 0x07; }
  else return 0;
  if (n < need) return 0;
  for (i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0; /* overlong, surrogate or out of range */
  return need;
}

/* Appends s (n bytes) JSON-escaped as described at the top. */
static int put_escaped(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *) s;
  size_t i = 0, l;
  char esc[6] = {'\\', 'u', '0', '0', 0, 0};
  while (i < n) {
    unsigned char c = u[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
      size_t j = i;
      while (j < n && u[j] >= 0x20 && u[j] != '"' && u[j] != '\\' && u[j] < 0x7f) j++;
      if (put(b, s + i, j - i)) return -1;
      i = j;
      continue;
    }
    if (c == '"') { if (put(b, "\\\"", 2)) return -1; i++; continue; }
    if (c == '\\') { if (put(b, "\\\\", 2)) return -1; i++; continue; }
    if (c == '\n') { if (put(b, "\\n", 2)) return -1; i++; continue; }
    if (c == '\r') { if (put(b, "\\r", 2)) return -1; i++; continue; }
    if (c == '\t') { if (put(b, "\\t", 2)) return -1; i++; continue; }
    if (c >= 0x80 && (l = utf8_len(u + i, n - i)) > 0) {
      if (put(b, s + i, l)) return -1;
      i += l;
      continue;
    }
    /* other control characters, DEL, and bytes that are not valid UTF-8 */
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xf];
    if (put(b, esc, 6)) return -1;
    i++;
  }
  return 0;
}

static int put_field(struct buf *b, const char *name, const char *s, size_t n) {
  if (puts_(b, ",\"") || puts_(b, name) || puts_(b, "\":")) return -1;
  if (s == NULL) return puts_(b, "null");
  if (puts_(b, "\"") || put_escaped(b, s, n)) return -1;
  return puts_(b, "\"");
}

/* Parses the comma-separated skip list; the write lock is held. */
static void parse_skip_users(const char *value) {
  char *tok, *save = NULL;
  num_skip_users = 0;
  if (value == NULL) return;
  strncpy(skip_buf, value, sizeof(skip_buf) - 1);
  skip_buf[sizeof(skip_buf) - 1] = 0;
  for (tok = strtok_r(skip_buf, ",", &save); tok && num_skip_users < MAX_SKIP_USERS; tok = strtok_r(NULL, ",", &save)) {
    char *end;
    while (*tok == ' ' || *tok == '\t') tok++;
    end = tok + strlen(tok);
    while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
    if (*tok) skip_users[num_skip_users++] = tok;
  }
}

/* Opens path for appending without ever waiting (O_NONBLOCK: a FIFO
   without a reader fails at once), and accepts only a regular file. Returns
   the descriptor, or -1 with why set to the reason. */
static int open_regular(const char *path, const char **why) {
  struct stat st;
  int nfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0640);
  if (nfd < 0) {
    *why = strerror(errno);
    return -1;
  }
  if (fstat(nfd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(nfd);
    *why = "not a regular file (a FIFO, socket or device could block every login)";
    return -1;
  }
  return nfd;
}

static const char *log_path(void) { return (file_value && *file_value) ? file_value : "audit_login.log"; }

/* Opens (or reopens) the log and hands it to the writer thread, which
   switches to it before its next record (never waiting for it: the writer
   may be stuck in a write). On failure the old descriptor is kept. */
static int open_log(void) {
  const char *why = NULL;
  int nfd = open_regular(log_path(), &why);
  if (nfd < 0) {
    fprintf(stderr, "audit_login: cannot open %s: %s\n", log_path(), why);
    return -1;
  }
  pthread_mutex_lock(&qmu);
  if (!writer_running) {
    if (fd >= 0) close(fd);
    fd = nfd;
  } else {
    if (new_fd >= 0) close(new_fd); /* an earlier reopen the writer has not taken yet */
    new_fd = nfd;
    pthread_cond_signal(&qwork);
  }
  pthread_mutex_unlock(&qmu);
  return 0;
}

/* Reports a failed write or a dropped record in the error log: the first
   at once, then at most once a minute with how many were lost meanwhile. */
static void report_write_error(int err, size_t written, size_t want) {
  time_t now = time(NULL);
  time_t last = __atomic_load_n(&last_report, __ATOMIC_RELAXED);
  __atomic_add_fetch(&unreported, 1, __ATOMIC_RELAXED);
  if (last != 0 && now - last < 60) return;
  if (!__atomic_compare_exchange_n(&last_report, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return;
  if (err == ETIMEDOUT)
    fprintf(stderr, "audit_login: %s is not taking records (a write has not returned for audit_login_wait_ms and %lu bytes wait): "
                    "%llu record(s) dropped since the last report (Audit_login_records_dropped); logins go on\n",
            log_path(), (unsigned long) want, (unsigned long long) __atomic_exchange_n(&unreported, 0, __ATOMIC_RELAXED));
  else
    fprintf(stderr, "audit_login: writing %s failed (%s; %zu of %zu bytes written): %llu record(s) lost since the last report; "
                    "the next record starts on a new line\n",
            log_path(), err ? strerror(err) : "short write", written, want,
            (unsigned long long) __atomic_exchange_n(&unreported, 0, __ATOMIC_RELAXED));
}

/* write(2) as the one point where the writer thread may be cancelled. */
static ssize_t cancellable_write(int wfd, const void *p, size_t n) {
  int old, err;
  ssize_t w;
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
  w = write(wfd, p, n);
  err = errno;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  errno = err;
  return w;
}

/* Writes one record (the writer thread). */
static void write_one(int wfd, struct rec *r) {
  ssize_t w;
  int err;
  /* After a failed or short write, a fragment without its newline may end
     the file: start on a fresh line (an empty line is skipped by readers). */
  if (broken) {
    if (cancellable_write(wfd, "\n", 1) == 1) broken = 0;
  }
  w = cancellable_write(wfd, r->data, r->len); /* one write per record */
  err = w < 0 ? errno : 0;
  if (w == (ssize_t) r->len) {
    __atomic_add_fetch(&records_written, 1, __ATOMIC_RELAXED);
  } else {
    __atomic_add_fetch(&write_errors, 1, __ATOMIC_RELAXED);
    broken = 1; /* maybe a fragment on disk */
    report_write_error(err, w > 0 ? (size_t) w : 0, r->len);
  }
}

/* The writer thread: takes records in order and writes them; a stuck write
   holds only this thread. It can be cancelled only inside write(), where it
   holds no lock (UNINSTALL with a target that never answers). */
static void *writer_main(void *arg) {
  (void) arg;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  pthread_mutex_lock(&qmu);
  for (;;) {
    struct rec *r;
    int wfd, old = -1;
    while (qhead == NULL && new_fd < 0 && !stopping) pthread_cond_wait(&qwork, &qmu);
    if (new_fd >= 0) {
      old = fd;
      fd = new_fd;
      new_fd = -1;
      broken = 0; /* a new file */
    }
    if (qhead == NULL && stopping) {
      pthread_mutex_unlock(&qmu);
      if (old >= 0) close(old);
      return NULL;
    }
    r = qhead;
    if (r) {
      qhead = r->next;
      if (!qhead) qtail = NULL;
    }
    wfd = fd;
    pthread_mutex_unlock(&qmu);
    if (old >= 0) close(old);
    if (r) {
      if (wfd >= 0) {
        write_one(wfd, r);
      } else { /* no file could be opened: lost, and said so */
        __atomic_add_fetch(&write_errors, 1, __ATOMIC_RELAXED);
        report_write_error(EBADF, 0, r->len);
      }
      pthread_mutex_lock(&qmu);
      qbytes -= r->len;
      __atomic_store_n(&queued_bytes, qbytes, __ATOMIC_RELAXED);
      pthread_cond_broadcast(&qroom);
      free(r);
    } else {
      pthread_mutex_lock(&qmu);
    }
  }
}

/* Queues a record for the writer; waits at most wait_ms for room, then
   drops it. */
static void enqueue(const char *data, size_t len) {
  struct rec *r = malloc(sizeof(struct rec) + len);
  struct timespec deadline;
  int waited = 0;
  if (r == NULL) {
    __atomic_add_fetch(&records_dropped, 1, __ATOMIC_RELAXED);
    report_write_error(ETIMEDOUT, 0, 0);
    return;
  }
  r->next = NULL;
  r->len = len;
  memcpy(r->data, data, len);
  pthread_mutex_lock(&qmu);
  while (qbytes > 0 && qbytes + len > __atomic_load_n(&buffer_size, __ATOMIC_RELAXED) && !stopping) {
    if (!waited) {
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_sec += wait_ms / 1000;
      deadline.tv_nsec += (long) (wait_ms % 1000) * 1000000L;
      if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
      }
      waited = 1;
    }
    if (wait_ms == 0 || pthread_cond_timedwait(&qroom, &qmu, &deadline) == ETIMEDOUT) {
      unsigned long long q = qbytes;
      pthread_mutex_unlock(&qmu);
      free(r);
      __atomic_add_fetch(&records_dropped, 1, __ATOMIC_RELAXED);
      report_write_error(ETIMEDOUT, 0, (size_t) q);
      return;
    }
  }
  if (qtail) qtail->next = r; else qhead = r;
  qtail = r;
  qbytes += len;
  __atomic_store_n(&queued_bytes, qbytes, __ATOMIC_RELAXED);
  pthread_cond_signal(&qwork);
  pthread_mutex_unlock(&qmu);
}

static void write_record(const struct mysql_event_connection *ev, const char *type) {
  struct buf b;
  char ts[32], num[32];
  struct tm tm;
  time_t now = time(NULL);
  int i, skip = 0;

  pthread_rwlock_rdlock(&lock);
  for (i = 0; i < num_skip_users; i++) {
    if (ev->user && strlen(skip_users[i]) == ev->user_length &&
        memcmp(skip_users[i], ev->user, ev->user_length) == 0) {
      skip = 1;
      break;
    }
  }
  pthread_rwlock_unlock(&lock);
  if (skip) return;
  localtime_r(&now, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
  snprintf(num, sizeof(num), "%lu", ev->thread_id);
  buf_init(&b);
  if (puts_(&b, "{\"ts\":\"") || puts_(&b, ts) || puts_(&b, "\",\"type\":\"") || puts_(&b, type) ||
      puts_(&b, "\"") || put_field(&b, "myhost", myhost, strlen(myhost)) ||
      puts_(&b, ",\"thread\":\"") || puts_(&b, num) || puts_(&b, "\"") ||
      put_field(&b, "user", ev->user, ev->user ? ev->user_length : 0) ||
      put_field(&b, "priv_user", ev->priv_user, ev->priv_user ? ev->priv_user_length : 0) ||
      put_field(&b, "host", ev->host, ev->host ? ev->host_length : 0) ||
      put_field(&b, "ip", ev->ip, ev->ip ? ev->ip_length : 0) || puts_(&b, ",\"escaped\":true}\n")) {
    __atomic_add_fetch(&write_errors, 1, __ATOMIC_RELAXED);
    buf_free(&b);
    return;
  }
  enqueue(b.p, b.len);
  buf_free(&b);
}

static void audit_login_notify(MYSQL_THD thd, unsigned int event_class, const void *event) {
  const struct mysql_event_connection *ev = (const struct mysql_event_connection *) event;
  int failed;
  (void) thd;
  if (!enabled || event_class != MYSQL_AUDIT_CONNECTION_CLASS) return;
  if (ev->event_subclass != MYSQL_AUDIT_CONNECTION_CONNECT &&
      ev->event_subclass != MYSQL_AUDIT_CONNECTION_CHANGE_USER)
    return; /* disconnects are not logins */
  failed = ev->status != 0 || ev->priv_user == NULL || ev->priv_user_length == 0;
  if (failed)
    __atomic_add_fetch(&failed_logins, 1, __ATOMIC_RELAXED);
  else
    __atomic_add_fetch(&successful_logins, 1, __ATOMIC_RELAXED);
  write_record(ev, failed ? "failed_login" : "successful_login");
}

/* String variables point into these buffers: the value the server hands
   over is only valid during the update (server_audit does the same). */
static char skip_users_store[1024];
static char file_store[4096];

static void copy_value(char *dst, size_t size, const void *save) {
  const char *v = *(const char *const *) save;
  if (v == NULL) v = "";
  strncpy(dst, v, size - 1);
  dst[size - 1] = 0;
}

/* Refuses a file that cannot be opened or is not a regular file, so that
   the variable always names the file being written (the update would
   otherwise keep writing the old one). */
static int check_file(MYSQL_THD thd, struct st_mysql_sys_var *var, void *save, struct st_mysql_value *value) {
  char buf[512];
  int len = sizeof(buf);
  const char *path = value->val_str(value, buf, &len), *why = NULL;
  int nfd;
  (void) thd; (void) var;
  if (path == NULL || *path == 0) path = "audit_login.log";
  nfd = open_regular(path, &why);
  if (nfd < 0) {
    fprintf(stderr, "audit_login: refusing audit_login_file=%s: %s\n", path, why);
    return 1;
  }
  close(nfd);
  *(const char **) save = path;
  return 0;
}

/* Refuses a skip list longer than the plugin keeps, instead of cutting it. */
static int check_skip_users(MYSQL_THD thd, struct st_mysql_sys_var *var, void *save, struct st_mysql_value *value) {
  char buf[2048];
  int len = sizeof(buf), names = 0;
  const char *v = value->val_str(value, buf, &len), *p;
  (void) thd; (void) var;
  if (v == NULL) v = "";
  if (strlen(v) >= sizeof(skip_buf)) {
    fprintf(stderr, "audit_login: refusing audit_login_skip_users: %zu characters, at most %zu\n", strlen(v), sizeof(skip_buf) - 1);
    return 1;
  }
  for (p = v; *p; p++) names += *p == ',';
  if (names + 1 > MAX_SKIP_USERS) {
    fprintf(stderr, "audit_login: refusing audit_login_skip_users: %d names, at most %d\n", names + 1, MAX_SKIP_USERS);
    return 1;
  }
  *(const char **) save = v;
  return 0;
}

static void update_skip_users(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr, const void *save) {
  (void) thd; (void) var;
  pthread_rwlock_wrlock(&lock);
  copy_value(skip_users_store, sizeof(skip_users_store), save);
  *(char **) var_ptr = skip_users_store;
  parse_skip_users(skip_users_store);
  pthread_rwlock_unlock(&lock);
}

/* The server serializes updates of a variable (LOCK_global_system_variables):
   file_store is written only here and at init. */
static void update_file(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr, const void *save) {
  (void) thd; (void) var;
  copy_value(file_store, sizeof(file_store), save);
  if (file_store[0] == 0) strcpy(file_store, "audit_login.log"); /* show the path actually used */
  *(char **) var_ptr = file_store;
  open_log(); /* checked just before: on a failure now, the old file stays open */
}

static void update_reopen(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr, const void *save) {
  (void) thd; (void) var;
  if (*(const char *) save) open_log();
  *(char *) var_ptr = 0; /* a trigger, like server_audit_file_rotate_now */
}

static MYSQL_SYSVAR_BOOL(enabled, enabled, PLUGIN_VAR_OPCMDARG,
                         "Write login records (ON by default)", NULL, NULL, 1);
static MYSQL_SYSVAR_STR(skip_users, skip_users_value, PLUGIN_VAR_RQCMDARG,
                        "Comma-separated user names not to log (at most 64 names, 1023 characters)", check_skip_users, update_skip_users, "");
static MYSQL_SYSVAR_STR(file, file_value, PLUGIN_VAR_RQCMDARG,
                        "The log file, a regular file (relative paths are in the data directory); setting it reopens; a path that cannot be opened is refused",
                        check_file, update_file, "audit_login.log");
static MYSQL_SYSVAR_BOOL(reopen, reopen_value, PLUGIN_VAR_OPCMDARG,
                         "SET it ON to reopen the log file (after renaming it, for rotation)", NULL, update_reopen, 0);
static MYSQL_SYSVAR_ULONG(buffer_size, buffer_size, PLUGIN_VAR_RQCMDARG,
                          "Bytes of records that may wait for the writer thread (a slow or stuck log file)",
                          NULL, NULL, 1 << 20, 4096, 1UL << 30, 0);
static MYSQL_SYSVAR_ULONG(wait_ms, wait_ms, PLUGIN_VAR_RQCMDARG,
                          "How long a login waits for room in a full buffer before its record is dropped (ms; 0: drop at once)",
                          NULL, NULL, 100, 0, 60000, 0);

static struct st_mysql_sys_var *sys_vars[] = {
    MYSQL_SYSVAR(enabled), MYSQL_SYSVAR(skip_users), MYSQL_SYSVAR(file), MYSQL_SYSVAR(reopen),
    MYSQL_SYSVAR(buffer_size), MYSQL_SYSVAR(wait_ms), NULL};

static struct st_mysql_show_var status_vars[] = {
    {"Audit_login_records_written", (char *) &records_written, SHOW_ULONGLONG},
    {"Audit_login_write_errors", (char *) &write_errors, SHOW_ULONGLONG},
    {"Audit_login_records_dropped", (char *) &records_dropped, SHOW_ULONGLONG},
    {"Audit_login_buffer_bytes", (char *) &queued_bytes, SHOW_ULONGLONG},
    {"Audit_login_successful_logins", (char *) &successful_logins, SHOW_ULONGLONG},
    {"Audit_login_failed_logins", (char *) &failed_logins, SHOW_ULONGLONG},
    {0, 0, 0}};

static int audit_login_init(void *p) {
  (void) p;
  myhost[HOSTNAME_LEN - 1] = 0;
  if (gethostname(myhost, HOSTNAME_LEN - 1) != 0) strcpy(myhost, "unknown");
  pthread_rwlock_wrlock(&lock);
  if (skip_users_value) {
    strncpy(skip_users_store, skip_users_value, sizeof(skip_users_store) - 1);
    skip_users_value = skip_users_store;
  }
  strncpy(file_store, (file_value && *file_value) ? file_value : "audit_login.log", sizeof(file_store) - 1);
  file_value = file_store; /* the variable shows the path actually used */
  parse_skip_users(skip_users_value);
  pthread_rwlock_unlock(&lock);
  stopping = 0;
  open_log(); /* a failure is logged; records are skipped until a reopen works */
  if (pthread_create(&writer, NULL, writer_main, NULL) != 0) {
    fprintf(stderr, "audit_login: cannot start the writer thread\n");
    pthread_mutex_lock(&qmu);
    if (fd >= 0) close(fd);
    fd = -1;
    pthread_mutex_unlock(&qmu);
    return 1;
  }
  pthread_mutex_lock(&qmu);
  writer_running = 1;
  pthread_mutex_unlock(&qmu);
  return 0;
}

/* Stops the writer once the queue is written; a writer stuck in a write
   for 5 s is cancelled there (a FUSE or interruptible NFS write returns). */
static int audit_login_deinit(void *p) {
  struct timespec deadline;
  struct rec *r;
  (void) p;
  pthread_mutex_lock(&qmu);
  stopping = 1;
  pthread_cond_broadcast(&qwork);
  pthread_cond_broadcast(&qroom);
  pthread_mutex_unlock(&qmu);
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 5;
  if (pthread_timedjoin_np(writer, NULL, &deadline) != 0) {
    fprintf(stderr, "audit_login: the log file has not taken a record for 5 s; cancelling its write\n");
    pthread_cancel(writer);
    pthread_join(writer, NULL);
  }
  pthread_mutex_lock(&qmu);
  writer_running = 0;
  while ((r = qhead) != NULL) {
    qhead = r->next;
    free(r);
    __atomic_add_fetch(&records_dropped, 1, __ATOMIC_RELAXED);
  }
  qtail = NULL;
  qbytes = 0;
  queued_bytes = 0;
  if (fd >= 0) close(fd);
  if (new_fd >= 0) close(new_fd);
  fd = new_fd = -1;
  pthread_mutex_unlock(&qmu);
  return 0;
}

static struct st_mysql_audit audit_login_descriptor = {
    MYSQL_AUDIT_INTERFACE_VERSION, NULL, audit_login_notify, {(unsigned long) MYSQL_AUDIT_CONNECTION_CLASSMASK}};

maria_declare_plugin(audit_login){
    MYSQL_AUDIT_PLUGIN,
    &audit_login_descriptor,
    "AUDIT_LOGIN",
    "auditlogin founders (after Shlomi Noach's audit_login, Outbrain)",
    "Logs every login and login attempt as one JSON line (escaped, rotatable)",
    PLUGIN_LICENSE_GPL,
    audit_login_init,
    audit_login_deinit,
    0x0200,
    status_vars,
    sys_vars,
    "2.0",
    MariaDB_PLUGIN_MATURITY_STABLE} maria_declare_plugin_end;
