// Garbage collection and VACUUM of one server's session table: timers in every
// process, coordinated through the housekeeping record table so that all the
// processes and hosts sharing the server run each job at most once per interval.
//
// Thread: the JS thread. Ownership: owned by its Server; owns its timers and the
// short-lived connection each VACUUM runs on.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "connection.h"
#include "errors.h"

namespace spg {

class Addon;
class Handler;
class Server;

class Housekeeping : public ConnectionDelegate {
 public:
  struct Run {
    bool valid = false;   // a run has finished in this process
    double at = 0;        // Unix seconds it started
    double duration = 0;  // seconds
    long long removed = 0;
    std::string error;  // empty when it succeeded
  };
  using GcDone = std::function<void(const ErrorInfo& error, long long removed)>;
  using VacuumDone = std::function<void(const ErrorInfo& error, bool ran)>;

  Housekeeping(Addon* addon, Handler* handler, Server* server, double gc_interval,
               double vacuum_interval);
  ~Housekeeping() override;
  Housekeeping(const Housekeeping&) = delete;
  Housekeeping& operator=(const Housekeeping&) = delete;

  // The server is up: start the timers (once).
  void ServerUp();
  void Close();
  // The handler is closing: a VACUUM in progress is stopped and its callers
  // told so (SPG_CLOSED), since close() must not wait for a long VACUUM.
  void Cancel();
  // `forced` runs whatever the interval says (gc(), the CLI); otherwise the run
  // happens only if no process has started one within the interval.
  void Gc(bool forced, GcDone done);
  void Vacuum(bool forced, VacuumDone done);

  const Run& last_gc() const { return last_gc_; }
  const Run& last_vacuum() const { return last_vacuum_; }

  // ConnectionDelegate, for the VACUUM connection.
  void OnConnected(Connection* conn) override;
  void OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) override;
  void OnRetired(Connection*) override {}

 private:
  static void OnTimer(uv_timer_t* timer);
  uv_timer_t* StartTimer(double interval);
  void CloseTimer(uv_timer_t** timer);
  void GcBatch(std::shared_ptr<struct GcState> state);
  void Record(const std::string& job, Run* run, const ErrorInfo& error);
  void StartVacuum();
  void VacuumFinished(ErrorInfo error);

  Addon* addon_;
  Handler* handler_;
  Server* server_;
  double gc_interval_;
  double vacuum_interval_;
  std::string gc_job_, vacuum_job_;
  uv_timer_t* gc_timer_ = nullptr;      // owned; unref'd
  uv_timer_t* vacuum_timer_ = nullptr;  // owned; unref'd
  bool gc_running_ = false;
  bool denied_reported_ = false;
  Run last_gc_, last_vacuum_;
  bool vacuum_busy_ = false;           // a VACUUM run (check, claim, VACUUM) is under way
  Connection* vacuum_conn_ = nullptr;  // the running VACUUM's own connection
  Run vacuum_run_;                     // the VACUUM in progress
  std::vector<VacuumDone> vacuum_waiters_;
};

}  // namespace spg
