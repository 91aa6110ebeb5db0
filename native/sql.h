// The SQL of the session table, built once per handler from its options. Every
// value is a bound parameter; only the table name (quoted by the facade) and
// numeric settings are part of the text.
#pragma once

#include <string>
#include <vector>

namespace spg {

// Prepared statement names; each connection prepares all of them during setup.
inline constexpr const char* kReadStmt = "spg_read";
inline constexpr const char* kWriteStmt = "spg_write";
inline constexpr const char* kTouchStmt = "spg_touch";
inline constexpr const char* kDestroyStmt = "spg_destroy";
inline constexpr const char* kMessageStmt = "spg_message";
inline constexpr const char* kGcStmt = "spg_gc";
inline constexpr const char* kFetchStmt = "spg_fetch";
inline constexpr const char* kAdoptStmt = "spg_adopt";

// The columns a session table must have (the original's 14).
extern const std::vector<std::string> kRequiredColumns;

struct SqlOptions {
  std::string table;  // quoted identifier, optionally schema-qualified
  std::string index;  // quoted name of the expiry index (same schema as the table)
  long long max_lifetime = 1440;
  bool keep_expired = false;
  int gc_batch = 1000;
};

struct Sql {
  explicit Sql(const SqlOptions& options);

  struct Prepared {
    const char* name;
    std::string text;
    int param_count;
  };
  std::vector<Prepared> prepared;  // what setup prepares

  // Setup: $1 = table name text; one row: (exists, columns "a,b,…", unique_on_id).
  std::string check;
  // Setup, in one Sync so the lock covers the DDL: $1 = lock key text.
  std::string lock;
  std::string create_table;
  std::string create_index;
};

}  // namespace spg
