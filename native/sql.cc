#include "sql.h"

#include <cstdint>
#include <cstdio>

namespace spg {

const std::vector<std::string> kRequiredColumns = {
    "sess_id",      "sess_name",         "sess_data",          "sess_created", "sess_modified",
    "sess_expire",  "sess_addr_created", "sess_addr_modified", "sess_counter", "sess_error",
    "sess_warning", "sess_notice",       "sess_err_message",   "sess_custom"};

namespace {

// The database clock in Unix seconds: every host sharing a server agrees on
// expiry, whatever its own clock says.
constexpr const char* kNow = "floor(extract(epoch from now()))::bigint";

}  // namespace

// The SQL is laid out by clause, which the formatter would undo.
std::string StatementName(const std::string& text) {
  // 64-bit FNV-1a: the same in every build and process, unlike std::hash.
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char name[4 + 16 + 1];
  std::snprintf(name, sizeof name, "spg_%016llx", static_cast<unsigned long long>(hash));
  return name;
}

// clang-format off
Sql::Sql(const SqlOptions& o) : gc_batch(o.gc_batch) {
  const std::string& t = o.table;
  const std::string now = kNow;
  const std::string lifetime = std::to_string(o.max_lifetime);
  // A stored row that has expired is replaced by a fresh one unless keepExpired.
  const std::string fresh = o.keep_expired
                                ? std::string("false")
                                : "coalesce(s.sess_expire, 0) < EXCLUDED.sess_modified";
  // Versions: every write carries the one its process gave it when issued, and
  // a stored row is only replaced by a write with a greater one. So a statement
  // that a hung server runs late, after its client gave up and sent it
  // elsewhere, cannot undo a newer write; a row without a version (PHP's, or
  // written before the column was added) yields to any versioned write.
  // Without the column the version parameters are still taken (the binding is
  // the same for every server) but not stored.
  const bool v = o.versioned;
  const std::string version_column = v ? ", sess_version" : "";
  const std::string version_read = v ? "sess_version" : "NULL::bigint AS sess_version";
  auto version_set = [v](const std::string& value) {
    return v ? ", sess_version = " + value : std::string();
  };
  const std::string stale = "(s.sess_version IS NOT NULL AND s.sess_version >= "
                            "EXCLUDED.sess_version)";
  const std::string newer = v ? " WHERE NOT " + stale : "";

  // The row of session `id` (an SQL expression). Column 11, expired, is never
  // null for a stored row; column 12 is its version (null: none).
  auto read_of = [&](const std::string& id) {
    return "SELECT sess_data, sess_counter, sess_error, sess_warning, sess_notice, sess_custom, "
           "sess_created, sess_modified, sess_expire, sess_addr_created, sess_addr_modified, "
           "coalesce(sess_expire, 0) < " + now + " AS expired, " + version_read + " "
           "FROM " + t + " WHERE sess_id = " + id;
  };
  // $1 id
  std::string read = read_of("$1");
  // $1 ids: one row per element, in order, all null (expired included) where
  // no session is stored. One statement reads a whole group of sessions: the
  // executor starts once, not once per id.
  std::string read_many = "SELECT r.* FROM unnest($1::text[]) WITH ORDINALITY AS u(id, i) "
                          "LEFT JOIN LATERAL (" + read_of("u.id") + ") AS r ON true ORDER BY u.i";

  const std::string columns_written =
      "INSERT INTO " + t + " AS s (sess_id, sess_name, sess_data, sess_created, sess_modified, "
      "sess_expire, sess_addr_created, sess_addr_modified, sess_counter, sess_error, "
      "sess_warning, sess_notice, sess_err_message, sess_custom" + version_column + ") ";
  // The update of an existing row, shared by both writes. `address` is the
  // request's address (null: unknown) and `custom` the new custom field
  // (null: not set by this request), as SQL expressions.
  auto on_conflict = [&](const std::string& address, const std::string& custom) {
    // A stale write (its version not above the row's) leaves each column as
    // it is, except that a live row's counts still go up: the write did
    // happen, and concurrent writes must not lose increments.
    auto set = [&](const char* column, const std::string& value) {
      return std::string(column) + " = " +
             (v ? "CASE WHEN " + stale + " THEN s." + column + " ELSE " + value + " END" : value);
    };
    auto count = [&](const char* column, const std::string& value) {
      return std::string(column) + " = " +
             (v ? "CASE WHEN " + stale + " AND " + fresh + " THEN s." + column + " ELSE " + value +
                      " END"
                : value);
    };
    return "ON CONFLICT (sess_id) DO UPDATE SET " +
           set("sess_data", "EXCLUDED.sess_data") + ", " +
           set("sess_modified", "EXCLUDED.sess_modified") + ", " +
           set("sess_expire", "EXCLUDED.sess_expire") + ", " +
           set("sess_name",
               "CASE WHEN " + fresh + " THEN EXCLUDED.sess_name ELSE s.sess_name END") + ", " +
           set("sess_created",
               "CASE WHEN " + fresh + " THEN EXCLUDED.sess_created ELSE s.sess_created END") +
           ", " +
           set("sess_addr_created", "CASE WHEN " + fresh +
               " THEN EXCLUDED.sess_addr_created ELSE s.sess_addr_created END") + ", " +
           set("sess_addr_modified", "CASE WHEN " + fresh + " THEN NULL "
               "ELSE coalesce(" + address + ", s.sess_addr_modified) END") + ", " +
           count("sess_counter",
                 "CASE WHEN " + fresh + " THEN 1 ELSE coalesce(s.sess_counter, 0) + 1 END") + ", " +
           count("sess_error", "CASE WHEN " + fresh +
                 " THEN EXCLUDED.sess_error ELSE coalesce(s.sess_error, 0) + EXCLUDED.sess_error "
                 "END") + ", " +
           count("sess_warning", "CASE WHEN " + fresh +
                 " THEN EXCLUDED.sess_warning ELSE coalesce(s.sess_warning, 0) + "
                 "EXCLUDED.sess_warning END") + ", " +
           count("sess_notice", "CASE WHEN " + fresh +
                 " THEN EXCLUDED.sess_notice ELSE coalesce(s.sess_notice, 0) + "
                 "EXCLUDED.sess_notice END") + ", " +
           set("sess_err_message", "CASE WHEN " + fresh + " THEN EXCLUDED.sess_err_message "
               "ELSE coalesce(EXCLUDED.sess_err_message, s.sess_err_message) END") + ", " +
           set("sess_custom", "CASE WHEN " + fresh + " OR " + custom +
               " IS NOT NULL THEN EXCLUDED.sess_custom ELSE s.sess_custom END") +
           (v ? ", " + set("sess_version", "EXCLUDED.sess_version") : std::string());
  };

  // $1 id, $2 name, $3 data, $4 address, $5 expires (null: now + maxLifetime),
  // $6 custom (null: not set by this request), $7..$9 error/warning/notice
  // increments, $10 message (null: not set), $11 version.
  // One upsert covers a new session, a concurrent insert of the same id, an
  // existing row (counter and error counts incremented in SQL), a row that
  // vanished since the read (stored again) and an expired row (replaced).
  std::string write =
      columns_written +
      "SELECT $1, $2, $3, n.now, n.now, coalesce($5::bigint, n.now + " + lifetime + "), "
      "coalesce($4, ''), NULL, 1, $7::int, $8::int, $9::int, $10, coalesce($6, '')" +
      (v ? ", n.version " : " ") +
      "FROM (SELECT " + now + " AS now, $11::bigint AS version) n " + on_conflict("$4", "$6");

  // The same for several sessions at once, in one statement (the executor is
  // set up once for all of them): $1 name, then one array per column, element
  // i for session i: $2 ids, $3 data, $4 addresses, $5 expires, $6..$8
  // error/warning/notice increments, $9 messages, $10 versions. Only writes that leave the
  // custom field alone go this way, and ids must be distinct (a row can be
  // updated once per statement). The address is read back from EXCLUDED:
  // an empty address means unknown, as in the single write.
  std::string write_many =
      columns_written +
      "SELECT u.id, $1, u.data, n.now, n.now, coalesce(u.expires, n.now + " + lifetime + "), "
      "coalesce(u.address, ''), NULL, 1, u.errors, u.warnings, u.notices, u.message, ''" +
      (v ? ", u.version " : " ") +
      "FROM (SELECT " + now + " AS now) n, "
      "unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::int[], "
      "$8::int[], $9::text[], $10::bigint[]) AS u(id, data, address, expires, errors, warnings, "
      "notices, message, version) " +
      on_conflict("nullif(EXCLUDED.sess_addr_created, '')", "NULL::text");

  // $1 id, $2 expires (null: now + maxLifetime). An expired row is not revived.
  std::string touch = "UPDATE " + t + " SET sess_expire = coalesce($2::bigint, " + now + " + " +
                      lifetime + ") WHERE sess_id = $1 AND coalesce(sess_expire, 0) >= " + now;

  std::string destroy = "DELETE FROM " + t + " WHERE sess_id = $1";
  std::string message = "SELECT sess_err_message FROM " + t + " WHERE sess_id = $1";

  // $1 grace seconds: rows expired for longer than that go, one bounded batch at
  // a time so no statement holds many row locks for long. A tombstone (below)
  // stays until the lifetime it was written for has passed; no lifetime is over
  // kMaxLifetime, so a value below -(now + kMaxLifetime) is no tombstone but a
  // corrupt expiry (another client's, or an out-of-range one of an older
  // version), expired for ever: it goes too.
  std::string gc = "DELETE FROM " + t + " WHERE sess_id IN (SELECT sess_id FROM " + t +
                   " WHERE (sess_expire < " + now + " - $1::bigint AND sess_expire >= -" + now +
                   ") OR sess_expire < -(" + now + " + " + std::to_string(kMaxLifetime) +
                   ") LIMIT " + std::to_string(o.gc_batch) + " FOR UPDATE SKIP LOCKED)";

  // $1 id, $2 version. A session destroyed while its home server is down
  // leaves a tombstone on the server that stands in: an empty row whose
  // negative sess_expire (minus the end of its lifetime) reads as expired
  // everywhere, PHP included. Moved home like any copy, it hides the row the
  // home server still has, and its version hides any write issued before it.
  std::string tombstone =
      "INSERT INTO " + t + " AS s (sess_id, sess_name, sess_data, sess_created, sess_modified, "
      "sess_expire, sess_counter, sess_error, sess_warning, sess_notice, sess_custom" +
      version_column + ") "
      "SELECT $1, '', '', n.now, n.now, -(n.now + " + lifetime + "), 0, 0, 0, 0, ''" +
      (v ? ", n.version " : " ") +
      "FROM (SELECT " + now + " AS now, $2::bigint AS version) n "
      "ON CONFLICT (sess_id) DO UPDATE SET sess_data = '', sess_custom = '', "
      "sess_err_message = NULL, sess_modified = EXCLUDED.sess_modified, "
      "sess_expire = EXCLUDED.sess_expire" + version_set("EXCLUDED.sess_version") + newer;

  // Moving a session home after an outage: the whole row (live, or a tombstone)
  // from the server that held it meanwhile ($1 id; column 13 of the fetch is
  // its version), stored at home unless home has a newer one: by version when
  // both rows have one, else by the servers' sess_modified as before versions.
  const std::string columns =
      "sess_name, sess_data, sess_created, sess_modified, sess_expire, sess_addr_created, "
      "sess_addr_modified, sess_counter, sess_error, sess_warning, sess_notice, "
      "sess_err_message, sess_custom";
  std::string fetch = "SELECT " + columns + ", " + version_read + " FROM " + t +
                      " WHERE sess_id = $1 AND (coalesce(sess_expire, 0) >= " + now +
                      " OR sess_expire < 0)";
  const std::string adopt_newer =
      v ? "CASE WHEN s.sess_version IS NOT NULL AND EXCLUDED.sess_version IS NOT NULL "
          "THEN s.sess_version < EXCLUDED.sess_version "
          "ELSE coalesce(s.sess_modified, 0) <= EXCLUDED.sess_modified END"
        : "coalesce(s.sess_modified, 0) <= EXCLUDED.sess_modified";
  // $15 version (null: none).
  std::string adopt =
      "INSERT INTO " + t + " AS s (sess_id, " + columns + version_column + ") SELECT $1, $2, $3, "
      "$4::bigint, $5::bigint, $6::bigint, $7, $8, $9::int, $10::int, $11::int, $12::int, $13, "
      "$14" + (v ? ", n.version " : " ") + "FROM (SELECT $15::bigint AS version) n "
      "ON CONFLICT (sess_id) DO UPDATE SET (" + columns + version_column + ") = ("
      "EXCLUDED.sess_name, EXCLUDED.sess_data, EXCLUDED.sess_created, EXCLUDED.sess_modified, "
      "EXCLUDED.sess_expire, EXCLUDED.sess_addr_created, EXCLUDED.sess_addr_modified, "
      "EXCLUDED.sess_counter, EXCLUDED.sess_error, EXCLUDED.sess_warning, EXCLUDED.sess_notice, "
      "EXCLUDED.sess_err_message, EXCLUDED.sess_custom" +
      (v ? ", EXCLUDED.sess_version" : "") + ") WHERE " + adopt_newer;

  prepared = {{kFetchStmt, fetch, 1},          {kAdoptStmt, adopt, 15},
              {kReadStmt, read, 1},            {kReadManyStmt, read_many, 1},
              {kWriteStmt, write, 11},         {kWriteManyStmt, write_many, 10},
              {kTouchStmt, touch, 2},          {kDestroyStmt, destroy, 1},
              {kMessageStmt, message, 1},      {kGcStmt, gc, 1},
              {kTombstoneStmt, tombstone, 2}};
  for (Prepared& p : prepared) p.name = StatementName(p.text);

  check =
      "SELECT c.oid IS NOT NULL, "
      "coalesce((SELECT string_agg(attname, ',') FROM pg_attribute "
      "WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), ''), "
      "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
      "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
      "WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 "
      "AND a.attname = 'sess_id'), "
      "to_regclass($2) IS NOT NULL "
      "FROM (SELECT to_regclass($1) AS oid) c";

  const std::string& hk = o.housekeeping;
  create_housekeeping = "CREATE TABLE IF NOT EXISTS " + hk +
                        " (job text PRIMARY KEY, last_start double precision, "
                        "last_finish double precision, runs bigint NOT NULL DEFAULT 0, "
                        "last_removed bigint, last_duration double precision, last_error text)";
  const std::string clock = "extract(epoch from clock_timestamp())::float8";
  claim = "INSERT INTO " + hk + " AS h (job, last_start, runs) VALUES ($1, " + clock +
          ", 1) ON CONFLICT (job) DO UPDATE SET last_start = EXCLUDED.last_start, "
          "runs = h.runs + 1 WHERE h.last_start IS NULL "
          "OR h.last_start <= EXCLUDED.last_start - $2::float8 RETURNING runs";
  record = "UPDATE " + hk + " SET last_finish = " + clock +
           ", last_removed = $2::bigint, last_duration = $3::float8, last_error = $4 "
           "WHERE job = $1";
  may_vacuum =
      "SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') "
      "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
      "FROM pg_class c, pg_database d "
      "WHERE c.oid = to_regclass($1) AND d.datname = current_database()";
  vacuum = "VACUUM (ANALYZE) " + t;
  // $1 table name text
  stats = "SELECT count(*), count(*) FILTER (WHERE coalesce(sess_expire, 0) < " + now +
          "), pg_total_relation_size(to_regclass($1)) FROM " + t;
  list = "SELECT sess_id, sess_data FROM " + t + " WHERE coalesce(sess_expire, 0) >= " + now +
         " ORDER BY sess_id";
  clear = "DELETE FROM " + t;

  lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
  create_table = "CREATE TABLE IF NOT EXISTS " + t +
                 " (sess_id text PRIMARY KEY, sess_name text, sess_data text, "
                 "sess_created bigint, sess_modified bigint, sess_expire bigint, "
                 "sess_addr_created text, sess_addr_modified text, sess_counter integer, "
                 "sess_error integer, sess_warning integer, sess_notice integer, "
                 "sess_err_message text, sess_custom text, sess_version bigint)";
  // A nullable column without a default: a catalog change, no table rewrite.
  add_version = "ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS sess_version bigint";
  create_index = "CREATE INDEX IF NOT EXISTS " + o.index + " ON " + t + " (sess_expire)";
}
// clang-format on

}  // namespace spg
