// Errors: the only place that reads libpq's error state (PQerrorMessage,
// PQresultErrorField) and the only place that turns a failure into a JS value.
//
// Failures are first captured as plain data (ErrorInfo) where they happen, inside
// libpq/uv callbacks, and converted to a JS SessionPgsqlError only when an
// operation settles. ErrorInfo never holds a password or session data.
#pragma once

#include <libpq-fe.h>
#include <napi.h>

#include <string>
#include <vector>

namespace spg {

// Library error codes. Server errors use their SQLSTATE instead.
namespace code {
inline constexpr const char* kInvalidArgument = "SPG_INVALID_ARGUMENT";
inline constexpr const char* kInvalidOption = "SPG_INVALID_OPTION";
inline constexpr const char* kDataTooLarge = "SPG_DATA_TOO_LARGE";
inline constexpr const char* kDataHasNul = "SPG_DATA_HAS_NUL";
inline constexpr const char* kClosed = "SPG_CLOSED";
inline constexpr const char* kConnectFailed = "SPG_CONNECT_FAILED";
inline constexpr const char* kConnectTimeout = "SPG_CONNECT_TIMEOUT";
inline constexpr const char* kConnectionLost = "SPG_CONNECTION_LOST";
inline constexpr const char* kTimeout = "SPG_TIMEOUT";
inline constexpr const char* kNoServer = "SPG_NO_SERVER";
inline constexpr const char* kReadOnly = "SPG_READ_ONLY";
inline constexpr const char* kTableMissing = "SPG_TABLE_MISSING";
inline constexpr const char* kTableInvalid = "SPG_TABLE_INVALID";
inline constexpr const char* kProtocol = "SPG_PROTOCOL";
}  // namespace code

// The SQLSTATEs the native core tells apart (PostgreSQL's names for them).
namespace sqlstate {
inline constexpr const char* kInvalidSqlStatementName = "26000";
inline constexpr const char* kInsufficientPrivilege = "42501";
inline constexpr const char* kUndefinedTable = "42P01";
inline constexpr const char* kDuplicatePreparedStatement = "42P05";
}  // namespace sqlstate

struct ErrorInfo {
  std::string code;     // library code or SQLSTATE; empty means "no error"
  std::string message;  // never contains a password or session data
  int server = -1;      // index in the server list, -1 when none is concerned
  bool retryable = false;
  // Diagnostic fields of a server error (empty when absent).
  std::string severity, detail, hint, table, column, constraint;

  explicit operator bool() const { return !code.empty(); }
};

ErrorInfo MakeError(const char* code, std::string message, int server = -1, bool retryable = false);

// A connection-level failure; the message is PQerrorMessage(conn), trimmed and
// scrubbed of `secrets` and of every secret the connection ended up using
// (from a service file or the environment too).
ErrorInfo ConnectionError(const char* code, const PGconn* conn, int server,
                          const std::vector<std::string>& secrets);

// Whether libpq treats `keyword` as a secret (dispchar "*" in PQconndefaults:
// password, sslpassword, and whatever later versions add).
bool IsSecretOption(const char* keyword);

// The secret keywords libpq knows, for scrubbing text it could not parse.
const std::vector<std::string>& SecretOptions();

// A failed statement (PGRES_FATAL_ERROR): SQLSTATE and diagnostic fields.
ErrorInfo ResultError(const PGresult* res, int server);

// Replaces every occurrence of `secret` in `text` by "***".
std::string Scrub(std::string text, const std::string& secret);
std::string Scrub(std::string text, const std::vector<std::string>& secrets);

// Builds a SessionPgsqlError through the constructor registered by the facade
// (`new ctor(message, code, details)`); falls back to a plain Error.
Napi::Value ToJs(Napi::Env env, const Napi::FunctionReference& ctor, const ErrorInfo& error);

}  // namespace spg
