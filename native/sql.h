// The SQL of the session table, built once per handler from its options. Every
// value is a bound parameter; only the table name (quoted by the facade) and
// numeric settings are part of the text.
#pragma once

#include <array>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace spg {

// The statements each connection prepares during setup, by key: an op asks for
// one with Statement::Prepared(key), and the connection sends it under its
// name on the wire (Sql::Prepared::name), or unnamed with its text.
inline constexpr const char* kReadStmt = "spg_read";
inline constexpr const char* kReadManyStmt = "spg_read_many";
inline constexpr const char* kWriteStmt = "spg_write";
inline constexpr const char* kWriteManyStmt = "spg_write_many";
inline constexpr const char* kTouchStmt = "spg_touch";
inline constexpr const char* kDestroyStmt = "spg_destroy";
inline constexpr const char* kMessageStmt = "spg_message";
inline constexpr const char* kFetchStmt = "spg_fetch";
inline constexpr const char* kAdoptStmt = "spg_adopt";
inline constexpr const char* kTombstoneStmt = "spg_tombstone";
inline constexpr const char* kWritePatchStmt = "spg_write_patch";
inline constexpr const char* kWritePatchManyStmt = "spg_write_patch_many";
inline constexpr const char* kLogoutStmt = "spg_logout";
// A user's sessions (the custom field names the user; see lib/users.ts).
inline constexpr const char* kUserIdsStmt = "spg_user_ids";
inline constexpr const char* kUserRowsStmt = "spg_user_rows";
inline constexpr const char* kRevokeStmt = "spg_revoke";

// The columns of kUserRowsStmt, in order: every stored copy of the ids asked
// for, tombstones and other users' rows included, so the newest copy decides.
enum UserRowColumn : int {
  kUserRowId,
  kUserRowCustom,
  kUserRowCreated,
  kUserRowModified,
  kUserRowExpire,
  kUserRowAddrCreated,
  kUserRowAddrModified,
  kUserRowVersion,  // null: none
  kUserRowExpired,  // whether it has expired (a tombstone has)
  kUserRowColumns
};

// The columns of Sql::records_for, in order.
enum RecordColumn : int {
  kRecordTarget,
  kRecordKind,     // kRecordRevoke or kRecordLogout
  kRecordSubject,  // the user (revoke) or the stored key (logout)
  kRecordVersion,
  kRecordSpared,   // revoke: the ids spared, a text[] literal; logout: ''
  kRecordBefore,   // revoke: sessions created later are spared; logout: null
  kRecordColumns
};
inline constexpr const char* kRecordRevoke = "revoke";
inline constexpr const char* kRecordLogout = "logout";

// The name a statement with `text` is prepared under (see Sql::Prepared::name).
std::string StatementName(const std::string& text);

// The columns a session table must have (the original's 14).
extern const std::vector<std::string> kRequiredColumns;
// Our own column, not the original's: the version of the row's last write, set
// by the process that issued it (see NextVersion in handler.cc). A table made
// by PHP or by an older session-pgsql lacks it until migrated.
inline constexpr const char* kVersionColumn = "sess_version";

// Bounds that lib/options.ts and lib/handler.ts check with messages for the
// user (the rule's home); the native side uses them only as guards that keep
// its casts defined and its SQL right. test/03.options.test.ts reads this
// header and fails unless both languages have the same numbers.
// - kMaxLifetime (MAX_LIFETIME_SECONDS, 2^31 - 1 s): GC tells a tombstone from
//   a corrupt expiry by it.
// - kMaxTimerSeconds (MAX_TIMER_SECONDS, 2^31 - 1 ms): what statement_timeout
//   (an int32 of ms) and libuv's timers hold.
// - kMaxExpires (MAX_EXPIRES, 8.64e15 ms, the last instant of a JS Date): the
//   latest absolute expiry.
inline constexpr long long kMaxLifetime = 2147483647;
inline constexpr double kMaxTimerSeconds = 2147483.647;
inline constexpr double kMaxExpires = 8.64e12;

// The table layout new tables get on a server that can GC without the expiry
// index (see GcWay): no index on sess_expire, so a write that moves only
// unindexed columns can be a HOT update (new row version on the same page, no
// index entry), and pages filled to kFillfactor % on insert, so an update
// finds room on its page. docs/operations.md, The table, has the measurements.
inline constexpr int kFillfactor = 90;
// Pages of the heap one GC statement scans (8 MB of 8 kB pages): a bounded
// statement however large the table is.
inline constexpr long long kGcRangePages = 1024;

// How GC finds expired rows on one server's table.
enum class GcWay {
  // Through the B-tree index on sess_expire: a table that has one (made before
  // the layout above, or by PHP), or a server before PostgreSQL 14.
  kByIndex,
  // Walks the heap in ranges of kGcRangePages pages (TID Range Scan,
  // PostgreSQL 14 and later), so the table needs no expiry index.
  kByRanges,
};
// `server_version` as PQserverVersion gives it (140000 for 14.0);
// `expiry_index`: the table has an index whose first column is sess_expire.
GcWay ChooseGcWay(int server_version, bool expiry_index);
// Whether a table created on a server of that version gets the layout
// without the expiry index (then GC there goes by ranges).
bool CreatesWithoutExpiryIndex(int server_version);

// The columns of a read (kReadStmt, kReadManyStmt), in order: Sql builds the
// select list from this enum, and the handler reads the cells by it.
enum ReadColumn : int {
  kReadData,
  kReadCounter,
  kReadError,
  kReadWarning,
  kReadNotice,
  kReadCustom,
  kReadCreated,
  kReadModified,
  kReadExpire,
  kReadAddrCreated,
  kReadAddrModified,
  kReadExpired,  // whether the row has expired; never null for a stored row
  kReadVersion,  // the row's version (null: none, or no version column)
  kReadColumns
};

// The columns of the look-aside's fetch (kFetchStmt): the whole row but its id,
// in the order kAdoptStmt takes them after the id ($2 is kFetchName + 2).
enum FetchColumn : int {
  kFetchName,
  kFetchData,
  kFetchCreated,
  kFetchModified,
  kFetchExpire,
  kFetchAddrCreated,
  kFetchAddrModified,
  kFetchCounter,
  kFetchError,
  kFetchWarning,
  kFetchNotice,
  kFetchErrMessage,
  kFetchCustom,
  kFetchVersion,  // null: none
  kFetchColumns
};

// The parameters of a single write (kWriteStmt), in order ($1 is kWriteId).
// WriteParams::Values() lists them so; the merged write (kWriteManyStmt) takes
// the name once, then one array per entry of kWriteManyArrays.
enum WriteParam : int {
  kWriteId,
  kWriteName,
  kWriteData,
  kWriteAddress,  // null: unknown (an update keeps the stored address)
  kWriteExpires,  // null: now + maxLifetime
  kWriteCustom,   // null: not set by this request (only such writes merge)
  kWriteErrors,
  kWriteWarnings,
  kWriteNotices,
  kWriteMessage,  // null: not set
  kWriteVersion,
  kWriteParams
};

// kWriteManyStmt's parameters after the name ($2, $3, ...): each an array with
// one element per merged write, its kWriteStmt parameter of that position.
// Every parameter but the name and the custom field (see WriteParam).
inline constexpr WriteParam kWriteManyArrays[] = {
    kWriteId,       kWriteData,    kWriteAddress, kWriteExpires, kWriteErrors,
    kWriteWarnings, kWriteNotices, kWriteMessage, kWriteVersion,
};
inline constexpr int kWriteManyParams = 1 + static_cast<int>(std::size(kWriteManyArrays));

// The parameters kWritePatchStmt takes after kWriteStmt's, and
// kWritePatchManyStmt as one more array each after kWriteManyStmt's.
enum PatchParam : int {
  // The top-level keys the writer changed, as a JSON object merged over the
  // stored one (null: a whole write, `data` replaces the stored data).
  kWritePatch = kWriteParams,
  // The top-level keys the writer removed, a PostgreSQL text[] literal (null: none).
  kWriteRemoved,
  // The values the writer read of the keys it changed or removed, as a JSON
  // object (a key it added: absent). A stale write (version not above the
  // row's) stores only the keys nobody changed since it read them; without
  // this (null) it stores no data.
  kWriteRead,
  // "t" when the writer read the session live: a tombstone (a logout since)
  // then stays; "f" otherwise.
  kWriteLoaded,
  // When the session was created (Unix seconds) as the writer read it (null:
  // unknown, or not read live). A row this write inserts keeps it, so a copy
  // stored on a stand-in during an outage still tells which session it is:
  // one a tombstone written since has ended (see Ends in copies.h).
  kWriteCreated,
  kWritePatchParams
};
inline constexpr PatchParam kWritePatchArrays[] = {kWritePatch, kWriteRemoved, kWriteRead,
                                                   kWriteLoaded, kWriteCreated};
inline constexpr int kWritePatchManyParams =
    kWriteManyParams + static_cast<int>(std::size(kWritePatchArrays));

// One session write: what the single write binds and the merged write is
// built from (through the single write's parameters).
struct WriteParams {
  std::string id;
  std::string name;
  std::string data;
  std::optional<std::string> address;
  std::optional<long long> expires;  // Unix seconds
  std::optional<std::string> custom;
  int errors = 0;
  int warnings = 0;
  int notices = 0;
  std::optional<std::string> message;
  long long version = 0;
  // kWritePatchStmt's (see PatchParam); unused by kWriteStmt.
  std::optional<std::string> patch;
  std::optional<std::string> removed;
  std::optional<std::string> read;
  bool loaded = false;
  std::optional<long long> created;

  // The parameters in WriteParam order as text; nullopt is SQL NULL. Moves the
  // strings out.
  std::array<std::optional<std::string>, kWriteParams> Values() &&;
};

struct SqlOptions {
  std::string table;         // quoted identifier, optionally schema-qualified
  std::string index;         // quoted name of the expiry index (same schema as the table)
  std::string housekeeping;  // quoted name of the table recording GC/VACUUM runs
  std::string records;       // quoted name of the records table (Sql::records_table)
  long long max_lifetime = 1440;
  bool keep_expired = false;
  int gc_batch = 1000;
  // Whether the table has kVersionColumn. Without it the statements take the
  // same parameters and ignore the versions (rows ordered as before: the
  // last statement a server runs wins).
  bool versioned = true;
};

struct Sql {
  explicit Sql(const SqlOptions& options);

  struct Prepared {
    const char* key;  // kReadStmt, ...
    std::string text;
    int param_count;
    // "spg_" and a hash of the text. why: backends behind a connection pooler
    // are shared, so a statement another handler (another table) prepared
    // there under the same name must never be run as ours; one with the same
    // name is the same text, hence the same statement.
    std::string name = {};
  };
  std::vector<Prepared> prepared;  // what setup prepares
  long long gc_batch;              // rows per GC statement

  // Setup: $1 = table, $2 = housekeeping table, $3 = record table; one row:
  // (exists, columns "a,b,…", unique_on_id, housekeeping_exists, expiry_index,
  // records_usable: the records table exists and the role may read, add and
  // delete records there).
  std::string check;
  std::string create_housekeeping;

  // Durable records of what a server missed (a revocation, a logout), kept on
  // the servers that were up, replayed on the one that missed it before it is
  // up again (docs/behaviour.md). The table sits next to the housekeeping
  // table, shared like it by every session table of the schema; each record
  // names its session table, its target (ServerSpec::identity) and the replay.
  // None of them is prepared: they run only while a server is down or coming
  // back, and a server may lack the table (then nothing is recorded there).
  std::string records_table;  // quoted, schema-qualified like the housekeeping table
  std::string create_records;
  // $1 table, $2 targets (text[]), $3 user, $4 ids spared (text[] literal, as
  // text), $5 version, $6 created no later than. Runs before kRevokeStmt in
  // its transaction: the record lasts until the user's sessions here expire.
  std::string record_revoke;
  // $1 table, $2 targets (text[]), $3 stored key, $4 version. Runs after
  // kLogoutStmt: the record lasts as long as the tombstone it left.
  std::string record_logout;
  // $1 table, $2 targets (text[]): the records for them, in RecordColumn order.
  std::string records_for;
  // $1 table, then one array per key column (targets, kinds, subjects,
  // versions, spared): deletes exactly those records.
  std::string drop_records;
  // $1 table: deletes the records whose bound has passed (GC).
  std::string purge_records;

  // Housekeeping, on the session connection: $1 job, $2 interval seconds; a row
  // comes back only for the one process that may run the job now.
  std::string claim;
  // $1 job, $2 rows removed, $3 duration seconds, $4 error message (null: none).
  std::string record;
  // GC, on a connection of its own (never the sessions' pipeline). Both take
  // $1 grace seconds and remove at most gc_batch rows, locked SKIP LOCKED: a
  // row a session statement holds is left for the next run, and no statement
  // waits on one (see the comment on them in sql.cc).
  // gc: through the expiry index (GcWay::kByIndex).
  std::string gc;
  // gc_range: the rows of pages [$2, $3) ($2, $3 as tid text '(page,0)').
  std::string gc_range;
  // $1 table: its main fork's size in pages, where GC by ranges stops (rows
  // added beyond it meanwhile are new, hence live).
  std::string gc_pages;
  // $1 table: whether the current role may VACUUM it (owner, db owner, superuser).
  std::string may_vacuum;
  std::string vacuum;
  // Size and row counts of the table (operators' status; a full count).
  std::string stats;
  // Every live session ({id, data}); every row removed. For express's all()/clear().
  std::string list;
  std::string clear;
  // Setup, in one Sync so the lock covers the DDL: $1 = lock key text.
  std::string lock;
  std::string create_table;
  // The same table with room for HOT updates (kFillfactor); made without the
  // expiry index (see CreatesWithoutExpiryIndex).
  std::string create_table_hot;
  std::string create_index;
  // The partial index on sess_custom (a user's sessions), made with the table.
  std::string create_user_index;
  // Adds kVersionColumn to a table made without it (instant: no default, no rewrite).
  std::string add_version;
};

}  // namespace spg
