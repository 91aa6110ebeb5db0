#include "config.h"

#include <cmath>
#include <utility>

#include "args.h"
#include "sql.h"

namespace spg {

ErrorInfo ReadConfig(Napi::Object object, HandlerConfig* config) {
  ArgReader read(object, "config");
  HandlerConfig& c = *config;
  ServerTimings& timings = c.timings;
  c.table = read.String("table");
  c.index = read.String("index");
  c.housekeeping = read.String("housekeeping");
  c.records = read.String("records");
  c.session_name = read.String("sessionName");
  c.placement_name = read.String("placement");
  c.create_table = read.Boolean("createTable");
  c.keep_expired = read.Boolean("keepExpired");
  timings.synchronous_commit = read.Boolean("synchronousCommit");
  const std::string pooler = read.String("pooler");
  const double max_lifetime = read.Number("maxLifetime");
  const double max_data_size = read.Number("maxDataSize");
  c.gc_interval = read.Number("gcInterval");
  c.vacuum_interval = read.Number("vacuumInterval");
  const double max_batch = read.Number("maxBatch");
  const double connections = read.Number("connections");
  timings.connect_timeout_ms = read.Number("connectTimeout");
  timings.statement_timeout_ms = read.Number("statementTimeout");
  timings.retry_min_ms = read.Number("retryMin");
  timings.retry_max_ms = read.Number("retryMax");
  if (!read.ok()) return read.error();
  // Guards, not rules: lib/options.ts checks every option with a message that
  // names it (and its range) before this runs. These keep the casts below (to
  // whole ms and seconds, libuv's uint64 ms) defined and GC's SQL right.
  if (pooler != "none" && pooler != "transaction") {
    read.Fail("config.pooler must be 'none' or 'transaction'");
    return read.error();
  }
  if (c.placement_name != "rendezvous" && c.placement_name != "php" &&
      c.placement_name != "failover") {
    read.Fail("config.placement must be 'rendezvous', 'php' or 'failover'");
    return read.error();
  }
  for (double d : {timings.connect_timeout_ms, timings.statement_timeout_ms, timings.retry_min_ms,
                   timings.retry_max_ms, c.gc_interval, c.vacuum_interval}) {
    if (!(d >= 0 && d <= kMaxTimerSeconds)) {
      read.Fail("config durations out of range (options.ts checks them first)");
      return read.error();
    }
  }
  if (!(max_lifetime > 0 && max_lifetime <= kMaxLifetime)) {
    read.Fail("config.maxLifetime out of range (options.ts checks it first)");
    return read.error();
  }
  timings.unnamed = pooler == "transaction";
  // Durations arrive in seconds, like every duration of the public API.
  for (double* ms : {&timings.connect_timeout_ms, &timings.statement_timeout_ms,
                     &timings.retry_min_ms, &timings.retry_max_ms}) {
    *ms *= 1000;
  }
  // The table counts whole seconds; a fraction rounds up so no session is born expired.
  c.max_lifetime = static_cast<long long>(std::ceil(max_lifetime));
  timings.max_batch = max_batch < 1 ? 1 : static_cast<size_t>(max_batch);
  timings.connections = connections < 1 ? 1 : static_cast<size_t>(connections);
  c.max_data_size = static_cast<size_t>(max_data_size);
  c.placement = c.placement_name == "failover" ? Placement::Mode::kFailover
                : c.placement_name == "php"    ? Placement::Mode::kPhp
                                               : Placement::Mode::kRendezvous;

  Napi::Value list = read.Value("servers");
  if (!list.IsArray() || list.As<Napi::Array>().Length() == 0) {
    read.Fail("config.servers must be a non-empty array of strings");
    return read.error();
  }
  Napi::Array entries = list.As<Napi::Array>();
  std::vector<std::string> plain_identities;
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    Napi::Value entry = entries.Get(i);
    if (!entry.IsString()) {
      read.Fail("config.servers[" + std::to_string(i) + "] must be a string");
      return read.error();
    }
    ServerSpec spec;
    std::string error;
    if (!ParseServerSpec(entry.As<Napi::String>().Utf8Value(), &spec, &error)) {
      // A guard: options.ts refuses an unparsable entry, naming what is wrong.
      read.Fail("config.servers[" + std::to_string(i) +
                "] is not a conninfo (options.ts checks it)");
      return read.error();
    }
    // why: the same server listed twice still needs two distinct identities.
    int twins = 0;
    for (const std::string& seen : plain_identities) twins += seen == spec.identity;
    plain_identities.push_back(spec.identity);
    if (twins > 0) spec.identity += "#" + std::to_string(twins);
    c.servers.push_back(std::move(spec));
  }
  return {};
}

}  // namespace spg
