#include "errors.h"

#include <cstring>

namespace spg {

namespace {

// libpq's messages span lines ("...failed: Connection refused\n\tIs the server
// running...?"); errors are one line, so runs of whitespace become one space.
std::string Trimmed(const char* text) {
  std::string s;
  for (const char* p = text ? text : ""; *p != '\0'; ++p) {
    const bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
    if (!space) {
      s += *p;
    } else if (!s.empty() && s.back() != ' ') {
      s += ' ';
    }
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string Field(const PGresult* res, int field) {
  const char* value = PQresultErrorField(res, field);
  return value ? value : "";
}

// SQLSTATEs for which running the same operation again may succeed.
bool IsRetryableSqlState(const std::string& state) {
  if (state.size() != 5) return false;
  if (state.compare(0, 2, "08") == 0) return true;  // connection exception
  if (state.compare(0, 2, "53") == 0) return true;  // insufficient resources
  return state == "40001" || state == "40P01" || state == "55P03" || state == "57014" ||
         state == "57P01" || state == "57P02" || state == "57P03";
}

}  // namespace

const std::vector<std::string>& SecretOptions() {
  // why: asked of libpq once, not listed by hand, so a secret option of a newer
  // libpq (e.g. an OAuth client secret) is redacted too. Only the JS thread
  // calls this; a function-local static is initialised once regardless.
  static const std::vector<std::string> keywords = [] {
    std::vector<std::string> out;
    PQconninfoOption* defaults = PQconndefaults();
    for (PQconninfoOption* o = defaults; o != nullptr && o->keyword != nullptr; ++o) {
      if (o->dispchar != nullptr && o->dispchar[0] == '*') out.emplace_back(o->keyword);
    }
    if (defaults != nullptr) PQconninfoFree(defaults);
    if (out.empty()) out = {"password", "sslpassword"};  // PQconndefaults out of memory
    return out;
  }();
  return keywords;
}

bool IsSecretOption(const char* keyword) {
  for (const std::string& k : SecretOptions()) {
    if (k == keyword) return true;
  }
  return false;
}

std::string Scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) text = Scrub(std::move(text), secret);
  return text;
}

std::string Scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
  return text;
}

ErrorInfo MakeError(const char* code, std::string message, int server, bool retryable) {
  ErrorInfo error;
  error.code = code;
  error.message = std::move(message);
  error.server = server;
  error.retryable = retryable;
  return error;
}

ErrorInfo ConnectionError(const char* code, const PGconn* conn, int server,
                          const std::vector<std::string>& secrets) {
  std::string detail = conn ? Trimmed(PQerrorMessage(conn)) : "";
  detail = Scrub(std::move(detail), secrets);
  if (conn != nullptr && !detail.empty()) {
    // A secret may come from a service file or PGPASSWORD rather than the entry.
    PQconninfoOption* used = PQconninfo(const_cast<PGconn*>(conn));
    for (PQconninfoOption* o = used; o != nullptr && o->keyword != nullptr; ++o) {
      if (o->val != nullptr && o->val[0] != '\0' && o->dispchar != nullptr &&
          o->dispchar[0] == '*') {
        detail = Scrub(std::move(detail), std::string(o->val));
      }
    }
    if (used != nullptr) PQconninfoFree(used);
  }
  std::string message = "server " + std::to_string(server) + ": ";
  if (std::strcmp(code, code::kConnectTimeout) == 0) {
    message += "connection timed out";
  } else if (std::strcmp(code, code::kConnectionLost) == 0) {
    message += "connection lost";
  } else {
    message += "connection failed";
  }
  if (!detail.empty()) message += ": " + detail;
  return MakeError(code, std::move(message), server, true);
}

ErrorInfo ResultError(const PGresult* res, int server) {
  ErrorInfo error;
  error.code = Field(res, PG_DIAG_SQLSTATE);
  if (error.code.empty()) error.code = code::kProtocol;
  std::string primary = Field(res, PG_DIAG_MESSAGE_PRIMARY);
  if (primary.empty()) primary = Trimmed(PQresultErrorMessage(res));
  error.message = "server " + std::to_string(server) + ": " + primary;
  error.server = server;
  error.retryable = IsRetryableSqlState(error.code);
  error.severity = Field(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  error.detail = Field(res, PG_DIAG_MESSAGE_DETAIL);
  error.hint = Field(res, PG_DIAG_MESSAGE_HINT);
  error.table = Field(res, PG_DIAG_TABLE_NAME);
  error.column = Field(res, PG_DIAG_COLUMN_NAME);
  error.constraint = Field(res, PG_DIAG_CONSTRAINT_NAME);
  // why: PostgreSQL's DETAIL for constraint failures quotes the failing row, which
  // is session data; it never leaves the process.
  if (error.code.compare(0, 2, "23") == 0) error.detail.clear();
  return error;
}

Napi::Value ToJs(Napi::Env env, const Napi::FunctionReference& ctor, const ErrorInfo& error) {
  Napi::Object details = Napi::Object::New(env);
  if (error.server >= 0) details.Set("server", Napi::Number::New(env, error.server));
  details.Set("retryable", Napi::Boolean::New(env, error.retryable));
  auto set_if = [&](const char* key, const std::string& value) {
    if (!value.empty()) details.Set(key, Napi::String::New(env, value));
  };
  set_if("severity", error.severity);
  set_if("detail", error.detail);
  set_if("hint", error.hint);
  set_if("table", error.table);
  set_if("column", error.column);
  set_if("constraint", error.constraint);

  Napi::String message = Napi::String::New(env, error.message);
  Napi::String code = Napi::String::New(env, error.code);
  if (!ctor.IsEmpty()) {
    napi_value argv[] = {message, code, details};
    napi_value result = nullptr;
    if (napi_new_instance(env, ctor.Value(), 3, argv, &result) == napi_ok) {
      return Napi::Value(env, result);
    }
    // why: a throwing constructor must not leave an exception pending in a uv callback.
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }
  Napi::Error plain = Napi::Error::New(env, error.message);
  plain.Set("code", code);
  plain.Set("retryable", Napi::Boolean::New(env, error.retryable));
  if (error.server >= 0) plain.Set("server", Napi::Number::New(env, error.server));
  return plain.Value();
}

}  // namespace spg
