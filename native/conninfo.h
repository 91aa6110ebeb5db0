// A `db` entry (a libpq conninfo string or URI) parsed once: its text, the
// same with every secret replaced by ***, the identity that places sessions,
// its secrets (to scrub from messages), and one connect target per host.
//
// Plain data, no I/O; the JS thread (libpq's option list is read once).
#pragma once

#include <string>
#include <vector>

#include "connection.h"

namespace spg {

// What a `db` entry says about a server, from PQconninfoParse.
struct ServerSpec {
  std::string conninfo;  // as given (trimmed)
  std::string redacted;  // key=value form with every secret option replaced by ***
  std::string identity;  // host(s), port(s) and database: stable across list reorders
  std::vector<std::string> secrets;  // values of the entry's secret options (password, ...)
  // One per host, in the order to try them, when the entry lists several
  // hosts; empty otherwise (see ConnectionConfig::targets).
  std::vector<ConnectTarget> targets;
};

// Parses one entry; on failure `error` names the problem without any secret.
bool ParseServerSpec(const std::string& entry, ServerSpec* spec, std::string* error);

}  // namespace spg
