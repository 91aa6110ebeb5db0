#include "conninfo.h"

#include <libpq-fe.h>

#include <algorithm>
#include <sstream>
#include <utility>

#include "errors.h"

namespace spg {

namespace {

std::string Quoted(const std::string& value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (c == ' ' || c == '\'' || c == '\\' || c == '=') plain = false;
  }
  if (plain) return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// The text after "<secret option>=" (quoted or not; in key=value form or a
// URI's query) and the password part of a URI's user info
// ("postgresql://user:secret@host").
std::vector<std::string> PasswordCandidates(const std::string& entry) {
  std::vector<std::string> out;
  for (const std::string& keyword : SecretOptions()) {
    for (size_t at = entry.find(keyword); at != std::string::npos;
         at = entry.find(keyword, at + 1)) {
      size_t p = entry.find_first_not_of(" \t", at + keyword.size());
      if (p == std::string::npos || entry[p] != '=') continue;
      p = entry.find_first_not_of(" \t", p + 1);
      if (p == std::string::npos) continue;
      const bool quoted = entry[p] == '\'';
      if (quoted) ++p;
      size_t end = quoted ? entry.find('\'', p) : entry.find_first_of(" \t&", p);
      out.push_back(entry.substr(p, end == std::string::npos ? std::string::npos : end - p));
    }
  }
  const size_t scheme = entry.find("://");
  if (scheme != std::string::npos) {
    const size_t at = entry.rfind('@');
    const size_t colon = entry.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out.push_back(entry.substr(colon + 1, at - colon - 1));
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const std::string& s) { return s.empty(); }),
            out.end());
  return out;
}

std::vector<std::string> CommaList(const std::string& value) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = value.find(',', start);
    out.push_back(value.substr(start, comma == std::string::npos ? std::string::npos
                                                                 : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

// One target per host of a multi-host entry, with every other option kept.
// Lists libpq would reject (mismatched lengths) are left whole, for libpq to
// report. target_session_attrs=prefer-standby needs two rounds: standbys on
// every host first, then any server, as libpq does over the whole list.
std::vector<ConnectTarget> ExpandHosts(const PQconninfoOption* options) {
  std::string host, hostaddr, port, attrs;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string key = o->keyword;
    if (key == "host") host = o->val;
    if (key == "hostaddr") hostaddr = o->val;
    if (key == "port") port = o->val;
    if (key == "target_session_attrs") attrs = o->val;
  }
  const std::vector<std::string> hosts = CommaList(host), addrs = CommaList(hostaddr),
                                 ports = CommaList(port);
  const size_t n = std::max(hosts.size(), addrs.size());
  if (n < 2) return {};
  if ((!host.empty() && hosts.size() != n) || (!hostaddr.empty() && addrs.size() != n) ||
      (ports.size() != 1 && ports.size() != n)) {
    return {};
  }
  const std::vector<std::string> rounds =
      attrs == "prefer-standby" ? std::vector<std::string>{"standby", "any"}
                                : std::vector<std::string>{attrs};
  std::vector<ConnectTarget> out;
  for (const std::string& round : rounds) {
    for (size_t i = 0; i < n; ++i) {
      ConnectTarget t;
      auto add = [&t](const char* key, const std::string& value) {
        if (value.empty()) return;
        t.keywords.emplace_back(key);
        t.values.push_back(value);
      };
      for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        if (o->val == nullptr) continue;
        const std::string key = o->keyword;
        if (key == "host" || key == "hostaddr" || key == "port" || key == "target_session_attrs")
          continue;
        add(o->keyword, o->val);
      }
      const std::string h = host.empty() ? std::string() : hosts[i];
      const std::string a = hostaddr.empty() ? std::string() : addrs[i];
      const std::string p = ports.size() == 1 ? ports[0] : ports[i];
      add("host", h);
      add("hostaddr", a);
      add("port", p);
      add("target_session_attrs", round);
      t.label = (h.empty() ? (a.empty() ? std::string("default host") : a) : h) +
                (p.empty() ? "" : ":" + p);
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace

bool ParseServerSpec(const std::string& entry, ServerSpec* spec, std::string* error) {
  char* raw_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(entry.c_str(), &raw_error);
  if (options == nullptr) {
    std::string message = raw_error ? raw_error : "out of memory";
    if (raw_error) PQfreemem(raw_error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    // why: a malformed entry does not parse far enough to find its password,
    // and libpq quotes the offending token, so every password-looking part of
    // the entry is scrubbed from the message. A guard: the rule's home is
    // lib/options.ts, which shows only what kind of problem it is.
    for (const std::string& secret : PasswordCandidates(entry)) message = Scrub(message, secret);
    *error = message;
    return false;
  }
  spec->targets = ExpandHosts(options);
  std::string host, hostaddr, port, dbname;
  std::ostringstream redacted;
  bool first = true;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string key = o->keyword, value = o->val;
    if (IsSecretOption(o->keyword)) {
      spec->secrets.push_back(value);
      value = "***";
    }
    if (key == "host") host = value;
    if (key == "hostaddr") hostaddr = value;
    if (key == "port") port = value;
    if (key == "dbname") dbname = value;
    redacted << (first ? "" : " ") << key << '=' << Quoted(value);
    first = false;
  }
  PQconninfoFree(options);
  spec->conninfo = entry;
  spec->redacted = redacted.str();
  spec->identity = (host.empty() ? hostaddr : host) + ":" + port + "/" + dbname;
  return true;
}

}  // namespace spg
