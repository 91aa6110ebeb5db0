#include "sql.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

namespace spg {

const std::vector<std::string> kRequiredColumns = {
    "sess_id",      "sess_name",         "sess_data",          "sess_created", "sess_modified",
    "sess_expire",  "sess_addr_created", "sess_addr_modified", "sess_counter", "sess_error",
    "sess_warning", "sess_notice",       "sess_err_message",   "sess_custom"};

namespace {

// The database clock in Unix seconds: every host sharing a server agrees on
// expiry, whatever its own clock says.
constexpr const char* kNow = "floor(extract(epoch from now()))::bigint";

// Column `c` of a read, as select-list SQL.
std::string ReadColumnSql(ReadColumn c, bool versioned) {
  switch (c) {
    case kReadData:
      return "sess_data";
    case kReadCounter:
      return "sess_counter";
    case kReadError:
      return "sess_error";
    case kReadWarning:
      return "sess_warning";
    case kReadNotice:
      return "sess_notice";
    case kReadCustom:
      return "sess_custom";
    case kReadCreated:
      return "sess_created";
    case kReadModified:
      return "sess_modified";
    case kReadExpire:
      return "sess_expire";
    case kReadAddrCreated:
      return "sess_addr_created";
    case kReadAddrModified:
      return "sess_addr_modified";
    case kReadExpired:
      return std::string("coalesce(sess_expire, 0) < ") + kNow + " AS expired";
    case kReadVersion:
      return versioned ? "sess_version" : "NULL::bigint AS sess_version";
    case kReadColumns:
      break;
  }
  return "";
}

// Column `c` of the fetch: the table's column of that name.
const char* FetchColumnName(FetchColumn c) {
  switch (c) {
    case kFetchName:
      return "sess_name";
    case kFetchData:
      return "sess_data";
    case kFetchCreated:
      return "sess_created";
    case kFetchModified:
      return "sess_modified";
    case kFetchExpire:
      return "sess_expire";
    case kFetchAddrCreated:
      return "sess_addr_created";
    case kFetchAddrModified:
      return "sess_addr_modified";
    case kFetchCounter:
      return "sess_counter";
    case kFetchError:
      return "sess_error";
    case kFetchWarning:
      return "sess_warning";
    case kFetchNotice:
      return "sess_notice";
    case kFetchErrMessage:
      return "sess_err_message";
    case kFetchCustom:
      return "sess_custom";
    case kFetchVersion:
      return "sess_version";
    case kFetchColumns:
      break;
  }
  return "";
}

// Parameter `p` of the single write: its alias in the merged write's unnest
// and its element type there.
struct WriteParamSql {
  const char* alias;
  const char* type;
};
WriteParamSql WriteParamOf(WriteParam p) {
  switch (p) {
    case kWriteId:
      return {"id", "text"};
    case kWriteName:
      return {"name", "text"};
    case kWriteData:
      return {"data", "text"};
    case kWriteAddress:
      return {"address", "text"};
    case kWriteExpires:
      return {"expires", "bigint"};
    case kWriteCustom:
      return {"custom", "text"};
    case kWriteErrors:
      return {"errors", "int"};
    case kWriteWarnings:
      return {"warnings", "int"};
    case kWriteNotices:
      return {"notices", "int"};
    case kWriteMessage:
      return {"message", "text"};
    case kWriteVersion:
      return {"version", "bigint"};
    case kWriteParams:
      break;
  }
  return {"", ""};
}

}  // namespace

std::array<std::optional<std::string>, kWriteParams> WriteParams::Values() && {
  std::array<std::optional<std::string>, kWriteParams> out;
  out[kWriteId] = std::move(id);
  out[kWriteName] = std::move(name);
  out[kWriteData] = std::move(data);
  out[kWriteAddress] = std::move(address);
  if (expires) out[kWriteExpires] = std::to_string(*expires);
  out[kWriteCustom] = std::move(custom);
  out[kWriteErrors] = std::to_string(errors);
  out[kWriteWarnings] = std::to_string(warnings);
  out[kWriteNotices] = std::to_string(notices);
  out[kWriteMessage] = std::move(message);
  out[kWriteVersion] = std::to_string(version);
  return out;
}

GcWay ChooseGcWay(int server_version, bool expiry_index) {
  // why: with the index there, updates are not HOT anyway and the index finds
  // the expired rows without reading the heap; TID Range Scan came in 14.
  return expiry_index || server_version < 140000 ? GcWay::kByIndex : GcWay::kByRanges;
}

bool CreatesWithoutExpiryIndex(int server_version) { return server_version >= 140000; }

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
  auto version_set = [v](const std::string& value) {
    return v ? ", sess_version = " + value : std::string();
  };
  const std::string stale = "(s.sess_version IS NOT NULL AND s.sess_version >= "
                            "EXCLUDED.sess_version)";
  const std::string newer = v ? " WHERE NOT " + stale : "";

  // The row of session `id` (an SQL expression), its columns in ReadColumn order.
  std::string read_columns;
  for (int c = 0; c < kReadColumns; ++c) {
    read_columns += (c == 0 ? "" : ", ") + ReadColumnSql(static_cast<ReadColumn>(c), v);
  }
  auto read_of = [&](const std::string& id) {
    return "SELECT " + read_columns + " FROM " + t + " WHERE sess_id = " + id;
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
  // `data` is the new sess_data of a write that is not stale (default: the
  // written data) and `where` a condition under which the row is updated at
  // all (default: always), as SQL.
  auto on_conflict = [&](const std::string& address, const std::string& custom,
                         const std::string& data = "EXCLUDED.sess_data",
                         const std::string& where = "",
                         const std::string& stale_data = "s.sess_data") {
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
    return std::string("ON CONFLICT (sess_id) DO UPDATE SET sess_data = ") +
           (v ? "CASE WHEN " + stale + " THEN " + stale_data + " ELSE " + data + " END" : data) +
           ", " +
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
           (v ? ", " + set("sess_version", "EXCLUDED.sess_version") : std::string()) + where;
  };

  // The parameters in WriteParam order. One upsert covers a new session, a
  // concurrent insert of the same id, an existing row (counter and error counts
  // incremented in SQL), a row that vanished since the read (stored again) and
  // an expired row (replaced).
  auto p = [](WriteParam param) { return "$" + std::to_string(param + 1); };
  auto typed = [&](WriteParam param) { return p(param) + "::" + WriteParamOf(param).type; };
  // The new row from the WriteParam parameters, in the column order of
  // columns_written; `extra` adds columns to the constants row `n`, and
  // `created` is its sess_created (SQL).
  auto inserted = [&](const std::string& extra, const std::string& created = "n.now") {
    return "SELECT " + p(kWriteId) + ", " + p(kWriteName) + ", " + p(kWriteData) + ", " +
           created + ", n.now, "
           "coalesce(" + typed(kWriteExpires) + ", n.now + " + lifetime + "), "
           "coalesce(" + p(kWriteAddress) + ", ''), NULL, 1, " + typed(kWriteErrors) + ", " +
           typed(kWriteWarnings) + ", " + typed(kWriteNotices) + ", " + p(kWriteMessage) + ", "
           "coalesce(" + p(kWriteCustom) + ", '')" + (v ? ", n.version " : " ") +
           "FROM (SELECT " + now + " AS now, " + typed(kWriteVersion) + " AS version" + extra +
           ") n ";
  };
  std::string write =
      columns_written + inserted("") + on_conflict(p(kWriteAddress), p(kWriteCustom));

  // The same for several sessions at once, in one statement (the executor is
  // set up once for all of them): $1 the name, then one array per entry of
  // kWriteManyArrays, element i for session i. Only writes that leave the
  // custom field alone go this way, and ids must be distinct (a row can be
  // updated once per statement). The address is read back from EXCLUDED:
  // an empty address means unknown, as in the single write.
  std::string arrays, aliases;
  for (size_t i = 0; i < std::size(kWriteManyArrays); ++i) {
    const WriteParamSql param = WriteParamOf(kWriteManyArrays[i]);
    arrays += (i == 0 ? "$" : ", $") + std::to_string(i + 2) + "::" + param.type + "[]";
    aliases += (i == 0 ? "" : ", ") + std::string(param.alias);
  }
  auto u = [](WriteParam param) { return std::string("u.") + WriteParamOf(param).alias; };
  // The new rows, in the column order of columns_written; `created` is their
  // sess_created (SQL).
  auto inserted_many = [&](const std::string& created) {
    return "SELECT " + u(kWriteId) + ", $1, " + u(kWriteData) + ", " + created + ", n.now, "
           "coalesce(" + u(kWriteExpires) + ", n.now + " + lifetime + "), "
           "coalesce(" + u(kWriteAddress) + ", ''), NULL, 1, " + u(kWriteErrors) + ", " +
           u(kWriteWarnings) + ", " + u(kWriteNotices) + ", " + u(kWriteMessage) + ", ''" +
           (v ? ", " + u(kWriteVersion) + " " : " ") +
           "FROM (SELECT " + now + " AS now) n, unnest(" + arrays + ") AS u(" + aliases + ") ";
  };
  std::string write_many = columns_written + inserted_many("n.now") +
                           on_conflict("nullif(EXCLUDED.sess_addr_created, '')", "NULL::text");

  // Writes of what a request changed (kWritePatchStmt, kWritePatchManyStmt):
  // the written keys merged over the stored JSON object after the removed
  // ones are taken out, here, on the row locked for the update, so two
  // requests that change different keys both keep theirs; of one key, the
  // last statement to run wins. The whole data (what an insert stores) is
  // stored instead where the write carries no patch, where the row has expired
  // (a tombstone included) and where the stored data is no JSON object: JSON
  // text that starts with "{" is an object; text that starts so and is no
  // JSON fails with a data exception, and the facade sends the write again
  // whole. A write from a request that read the session live never replaces a
  // tombstone: that request started before a logout, which stays.
  // A stale patch (see `stale` above: issued before the row's last write, run
  // after it) stores the keys that nobody changed since its writer read them
  // (`read`: the values it read): a concurrent request in another process
  // whose version happens to be lower must not lose a key the other one did
  // not touch, and a key changed since stays as the newer write left it.
  auto merged_data = [&](const std::string& patch, const std::string& removed) {
    return "CASE WHEN " + patch + " IS NULL OR coalesce(s.sess_expire, 0) < "
           "EXCLUDED.sess_modified OR coalesce(s.sess_data, '') NOT LIKE '{%' "
           "THEN EXCLUDED.sess_data ELSE ((s.sess_data::jsonb - coalesce(" + removed +
           ", '{}'::text[])) || " + patch + "::jsonb)::text END";
  };
  auto stale_merged_data = [&](const std::string& patch, const std::string& removed,
                               const std::string& read) {
    const std::string unchanged = "s.sess_data::jsonb -> k IS NOT DISTINCT FROM " + read +
                                  "::jsonb -> k";
    return "CASE WHEN " + patch + " IS NULL OR " + read +
           " IS NULL OR coalesce(s.sess_expire, 0) < EXCLUDED.sess_modified "
           "OR coalesce(s.sess_data, '') NOT LIKE '{%' THEN s.sess_data "
           "ELSE ((s.sess_data::jsonb - ARRAY(SELECT k FROM unnest(coalesce(" +
           removed + ", '{}'::text[])) AS r(k) WHERE " + unchanged + ")) || "
           "coalesce((SELECT jsonb_object_agg(e.k, e.value) FROM jsonb_each(" + patch +
           "::jsonb) AS e(k, value) WHERE " + unchanged + "), '{}'::jsonb))::text END";
  };
  auto pp = [](PatchParam param) { return "$" + std::to_string(param + 1); };
  std::string write_patch =
      // The read values are named here too: only a versioned table's statement uses them.
      columns_written +
      inserted(", " + pp(kWriteRead) + "::text AS read",
               "coalesce(" + pp(kWriteCreated) + "::bigint, n.now)") +
      on_conflict(p(kWriteAddress), p(kWriteCustom),
                  merged_data(pp(kWritePatch) + "::text", pp(kWriteRemoved) + "::text[]"),
                  " WHERE NOT (" + pp(kWriteLoaded) + "::bool AND s.sess_expire < 0)",
                  stale_merged_data(pp(kWritePatch) + "::text", pp(kWriteRemoved) + "::text[]",
                                    pp(kWriteRead) + "::text"));
  // The merged form: ON CONFLICT sees only the table's columns, so each row
  // finds its patch by its id's place in the ids (distinct in a merged write).
  // The patch arrays are null when no write of the batch has a patch: then no
  // row looks anything up, only a tombstone looks up its loaded flag, and an
  // insert its created time.
  auto ma = [](PatchParam param) {
    return "$" + std::to_string(kWriteManyParams + 1 + (param - kWritePatch)) + "::" +
           (param == kWriteLoaded ? "bool[]" : param == kWriteCreated ? "bigint[]" : "text[]");
  };
  const std::string at = "array_position($2::text[], s.sess_id)";  // $2: the ids
  auto lookup = [&](const std::string& expression, bool with_read) {
    return "CASE WHEN " + ma(kWritePatch) + " IS NULL THEN " +
           (with_read ? "s.sess_data" : "EXCLUDED.sess_data") + " ELSE (SELECT " + expression +
           " FROM (SELECT (" + ma(kWritePatch) + ")[i] AS patch, (" + ma(kWriteRemoved) +
           ")[i] AS removed, (" + ma(kWriteRead) + ")[i] AS read FROM " + at +
           " AS i) AS p) END";
  };
  std::string write_patch_many =
      columns_written +
      inserted_many("coalesce((" + ma(kWriteCreated) + ")[array_position($2::text[], " +
                    u(kWriteId) + ")], n.now)") +
      on_conflict("nullif(EXCLUDED.sess_addr_created, '')", "NULL::text",
                  lookup(merged_data("p.patch", "p.removed::text[]"), false),
                  " WHERE NOT (s.sess_expire < 0 AND coalesce((" + ma(kWriteLoaded) + ")[" + at +
                      "], false))",
                  lookup(stale_merged_data("p.patch", "p.removed::text[]", "p.read"), true));

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
  // version), expired for ever: it goes too. A NULL expiry never goes.
  const std::string expired = "((sess_expire < " + now + " - $1::bigint AND sess_expire >= -" +
                              now + ") OR sess_expire < -(" + now + " + " +
                              std::to_string(kMaxLifetime) + "))";
  const std::string limit = " LIMIT " + std::to_string(o.gc_batch) + " FOR UPDATE SKIP LOCKED";
  gc = "DELETE FROM " + t + " WHERE sess_id IN (SELECT sess_id FROM " + t + " WHERE " + expired +
       limit + ")";
  // By ranges: a TID Range Scan of pages [$2, $3) finds the expired rows, and
  // a TID Scan deletes the ones it locked; no index is read or needed.
  gc_range = "DELETE FROM " + t + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM " + t +
             " WHERE ctid >= $2::tid AND ctid < $3::tid AND " + expired + limit + "))";
  gc_pages = "SELECT (pg_relation_size(to_regclass($1)) / "
             "current_setting('block_size')::bigint)::bigint";

  // $1 id, $2 version. A session destroyed while its home server is down
  // leaves a tombstone on the server that stands in: an empty row whose
  // negative sess_expire (minus the end of its lifetime) reads as expired
  // everywhere, PHP included. Moved home like any copy, it hides the row the
  // home server still has, and its version hides any write issued before it.
  // The empty row, and the update that empties a stored one; the caller adds
  // how sess_expire and the version are updated.
  const std::string empty_row =
      "INSERT INTO " + t + " AS s (sess_id, sess_name, sess_data, sess_created, sess_modified, "
      "sess_expire, sess_counter, sess_error, sess_warning, sess_notice, sess_custom" +
      version_column + ") "
      "SELECT $1, '', '', n.now, n.now, -(n.now + " + lifetime + "), 0, 0, 0, 0, ''" +
      (v ? ", n.version " : " ") +
      "FROM (SELECT " + now + " AS now, $2::bigint AS version) n "
      "ON CONFLICT (sess_id) DO UPDATE SET sess_data = '', sess_custom = '', "
      "sess_err_message = NULL, sess_modified = EXCLUDED.sess_modified, ";
  std::string tombstone = empty_row + "sess_expire = EXCLUDED.sess_expire" +
                          version_set("EXCLUDED.sess_version") + newer;

  // $1 id, $2 version. A logout (destroy with a tombstone): the tombstone
  // above, but whatever the row's version, as a DELETE would: a write issued
  // after it but run before it must not keep the session. It lasts as long as
  // the session would have (at least a lifetime, at most kMaxLifetime, which
  // GC reads as the bound of a tombstone), so a request still holding the
  // session cannot write it back meanwhile (see write_patch).
  std::string logout =
      empty_row +
      "sess_expire = greatest(-(EXCLUDED.sess_modified + " + std::to_string(kMaxLifetime) +
      "), least(EXCLUDED.sess_expire, -abs(coalesce(s.sess_expire, 0))))" +
      version_set("greatest(s.sess_version, EXCLUDED.sess_version)");

  // Moving a session home after an outage: the whole row (live, or a tombstone)
  // from the server that held it meanwhile ($1 id; the fetch's columns in
  // FetchColumn order, kFetchVersion last), stored at home unless home has a
  // newer one: by version when both rows have one, else by the servers'
  // sess_modified as before versions.
  std::string columns;
  for (int c = 0; c < kFetchVersion; ++c) {
    columns += (c == 0 ? "" : ", ") + std::string(FetchColumnName(static_cast<FetchColumn>(c)));
  }
  std::string fetch = "SELECT " + columns + ", " + ReadColumnSql(kReadVersion, v) + " FROM " + t +
                      " WHERE sess_id = $1 AND (coalesce(sess_expire, 0) >= " + now +
                      " OR sess_expire < 0)";
  const std::string adopt_newer =
      v ? "CASE WHEN s.sess_version IS NOT NULL AND EXCLUDED.sess_version IS NOT NULL "
          "THEN s.sess_version < EXCLUDED.sess_version "
          "ELSE coalesce(s.sess_modified, 0) <= EXCLUDED.sess_modified END"
        : "coalesce(s.sess_modified, 0) <= EXCLUDED.sess_modified";
  // $1 id, then the fetched row: column c is $(c + 2), its version (null:
  // none) last.
  auto fetched = [](FetchColumn c) { return "$" + std::to_string(c + 2); };
  std::string adopted, excluded;
  for (int c = 0; c < kFetchVersion; ++c) {
    const auto column = static_cast<FetchColumn>(c);
    const bool integer = column == kFetchCounter || column == kFetchError ||
                         column == kFetchWarning || column == kFetchNotice;
    const bool bigint =
        column == kFetchCreated || column == kFetchModified || column == kFetchExpire;
    adopted += ", " + fetched(column) + (integer ? "::int" : bigint ? "::bigint" : "");
    excluded += (c == 0 ? "EXCLUDED." : ", EXCLUDED.") + std::string(FetchColumnName(column));
  }
  // Before versions and clocks, a tombstone ends every live copy of the
  // session it ended: one created no later than the tombstone was written (a
  // write of a request that read the session before a logout, stored on a
  // server that missed the logout, keeps the session's created time; see
  // kWriteCreated). Ends in copies.h decides the same for the look-aside.
  auto ends = [&](const std::string& tombstone, const std::string& copy) {
    return "(" + tombstone + ".sess_expire < 0 AND coalesce(" + copy + ".sess_expire, 0) >= " +
           now + " AND coalesce(" + copy + ".sess_created, 0) <= " + tombstone +
           ".sess_modified)";
  };
  std::string adopt =
      "INSERT INTO " + t + " AS s (sess_id, " + columns + version_column + ") SELECT $1" +
      adopted + (v ? ", n.version " : " ") + "FROM (SELECT " + fetched(kFetchVersion) +
      "::bigint AS version) n "
      "ON CONFLICT (sess_id) DO UPDATE SET (" + columns + version_column + ") = (" + excluded +
      (v ? ", EXCLUDED.sess_version" : "") + ") WHERE CASE WHEN " + ends("s", "EXCLUDED") +
      " THEN false WHEN " + ends("EXCLUDED", "s") + " THEN true ELSE " + adopt_newer + " END";

  prepared = {{kFetchStmt, fetch, 1},
              {kAdoptStmt, adopt, 1 + kFetchColumns},
              {kReadStmt, read, 1},
              {kReadManyStmt, read_many, 1},
              {kWriteStmt, write, kWriteParams},
              {kWriteManyStmt, write_many, kWriteManyParams},
              {kTouchStmt, touch, 2},
              {kDestroyStmt, destroy, 1},
              {kMessageStmt, message, 1},
              {kTombstoneStmt, tombstone, 2},
              {kWritePatchStmt, write_patch, kWritePatchParams},
              {kWritePatchManyStmt, write_patch_many, kWritePatchManyParams},
              {kLogoutStmt, logout, 2}};
  // A user's sessions: the user is in the custom field, which the partial
  // index below covers (the `<> ''` lets the planner use it for any $1).
  const std::string of_user = "sess_custom = $1 AND sess_custom <> ''";
  // $1 user: the ids of that user's live rows.
  std::string user_ids = "SELECT sess_id FROM " + t + " WHERE " + of_user +
                         " AND coalesce(sess_expire, 0) >= " + now;
  // $1 ids (text[]): every row of those ids, in UserRowColumn order.
  std::string user_rows = "SELECT sess_id, sess_custom, sess_created, sess_modified, sess_expire, "
                          "sess_addr_created, sess_addr_modified, " +
                          ReadColumnSql(kReadVersion, v) + ", " +
                          ReadColumnSql(kReadExpired, v) + " FROM " + t +
                          " WHERE sess_id = ANY($1::text[])";
  // $1 user, $2 ids spared (text[]), $3 version, $4 created no later than (null:
  // any). Turns that user's live rows into tombstones (kTombstoneStmt's shape),
  // not deletions: a request of a revoked session that writes late finds the
  // tombstone, newer than anything it loaded. The version is above the row's
  // whatever the clocks of the processes that wrote it. $4 spares sessions
  // logged in after a revocation that waited for this server's return.
  std::string revoke =
      "UPDATE " + t + " AS s SET sess_data = '', sess_custom = '', sess_err_message = NULL, "
      "sess_modified = n.now, sess_expire = -(n.now + " + lifetime + ")" +
      version_set("greatest(n.version, coalesce(s.sess_version, 0) + 1)") +
      " FROM (SELECT " + now + " AS now, $3::bigint AS version) n WHERE s." + of_user +
      " AND coalesce(s.sess_expire, 0) >= n.now AND NOT (s.sess_id = ANY($2::text[])) "
      "AND ($4::bigint IS NULL OR s.sess_created <= $4::bigint) RETURNING s.sess_id";
  prepared.push_back({kUserIdsStmt, user_ids, 1});
  prepared.push_back({kUserRowsStmt, user_rows, 1});
  prepared.push_back({kRevokeStmt, revoke, 4});
  for (Prepared& p : prepared) p.name = StatementName(p.text);

  check =
      "SELECT c.oid IS NOT NULL, "
      "coalesce((SELECT string_agg(attname, ',') FROM pg_attribute "
      "WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), ''), "
      "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
      "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
      "WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 "
      "AND a.attname = 'sess_id'), "
      "to_regclass($2) IS NOT NULL, "
      "EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
      "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
      "WHERE i.indrelid = c.oid AND a.attname = 'sess_expire'), "
      "CASE WHEN to_regclass($3) IS NULL THEN false "
      "ELSE has_table_privilege(to_regclass($3), 'SELECT') "
      "AND has_table_privilege(to_regclass($3), 'INSERT') "
      "AND has_table_privilege(to_regclass($3), 'DELETE') END "
      "FROM (SELECT to_regclass($1) AS oid) c";

  const std::string& hk = o.housekeeping;
  create_housekeeping = "CREATE TABLE IF NOT EXISTS " + hk +
                        " (job text PRIMARY KEY, last_start double precision, "
                        "last_finish double precision, runs bigint NOT NULL DEFAULT 0, "
                        "last_removed bigint, last_duration double precision, last_error text)";
  records_table = o.records;
  const std::string& rt = records_table;
  // A record is kept once per holder: recording it again (a retry, another
  // holder's view) changes nothing. `until` (Unix seconds, the holder's clock)
  // is when no session it concerns can still be live: GC removes it then.
  create_records = "CREATE TABLE IF NOT EXISTS " + rt +
                   " (sess_table text NOT NULL, target text NOT NULL, kind text NOT NULL, "
                   "subject text NOT NULL, version bigint NOT NULL, spared text NOT NULL, "
                   "created_before bigint, recorded bigint NOT NULL, until bigint NOT NULL, "
                   "PRIMARY KEY (sess_table, target, kind, subject, version, spared))";
  const std::string record_into =
      "INSERT INTO " + rt + " (sess_table, target, kind, subject, version, spared, "
      "created_before, recorded, until) ";
  // why: the user's sessions on the missed server were written before it went
  // down, by the same application as the ones here, so they expire by the
  // latest of these (and a session with the handler's lifetime, by a lifetime
  // from now): a record older than that can concern no live session.
  record_revoke = record_into + "SELECT $1, target, '" + kRecordRevoke +
                  "', $3, $5::bigint, $4, $6::bigint, n.now, greatest(n.now + " + lifetime +
                  ", (SELECT max(sess_expire) FROM " + t +
                  " WHERE sess_custom = $3 AND sess_custom <> '' AND sess_expire >= n.now)) "
                  "FROM (SELECT " + now + " AS now) n, unnest($2::text[]) AS target "
                  "ON CONFLICT DO NOTHING";
  // After the logout the tombstone's expiry is minus the end of the
  // session's lifetime (see logout): the record lasts as long.
  record_logout = record_into + "SELECT $1, target, '" + kRecordLogout +
                  "', $3, $4::bigint, '', NULL, n.now, greatest(n.now + " + lifetime +
                  ", (SELECT abs(greatest(sess_expire, -" + std::to_string(4 * kMaxLifetime) +
                  ")) FROM " + t + " WHERE sess_id = $3)) "
                  "FROM (SELECT " + now + " AS now) n, unnest($2::text[]) AS target "
                  "ON CONFLICT DO NOTHING";
  records_for = "SELECT target, kind, subject, version, spared, created_before FROM " + rt +
                " WHERE sess_table = $1 AND target = ANY($2::text[]) ORDER BY recorded, version";
  drop_records = "DELETE FROM " + rt +
                 " WHERE sess_table = $1 AND (target, kind, subject, version, spared) IN "
                 "(SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], "
                 "$6::text[]))";
  purge_records = "DELETE FROM " + rt + " WHERE sess_table = $1 AND until < " + now;

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
  create_table_hot = create_table + " WITH (fillfactor = " + std::to_string(kFillfactor) + ")";
  // A nullable column without a default: a catalog change, no table rewrite.
  add_version = "ALTER TABLE " + t + " ADD COLUMN IF NOT EXISTS sess_version bigint";
  create_index = "CREATE INDEX IF NOT EXISTS " + o.index + " ON " + t + " (sess_expire)";
  // Named after the expiry index ("<table>_expire_idx" -> "<table>_user_idx",
  // shorter, so within 63 bytes too). Partial: only rows naming a user are in
  // it, and a write that leaves sess_custom as it is keeps its HOT update.
  std::string user_index = o.index;
  const size_t suffix = user_index.rfind("_expire_idx");
  if (suffix != std::string::npos) {
    user_index.replace(suffix, std::strlen("_expire_idx"), "_user_idx");
  } else {
    user_index.insert(user_index.size() - 1, "_user_idx");
  }
  create_user_index = "CREATE INDEX IF NOT EXISTS " + user_index + " ON " + t +
                      " (sess_custom) WHERE sess_custom <> ''";
}
// clang-format on

}  // namespace spg
