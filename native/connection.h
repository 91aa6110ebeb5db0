// One PGconn driven without blocking: the transport under a Pipeline.
// Non-blocking connect under our own deadline (each host of a multi-host entry
// in turn), pipeline mode, the socket watched by uv_poll on the environment's
// own loop, output flushed once per loop turn (by Addon's prepare hook) and
// between the few-at-a-time answers of Addon::RunDeliveries, the statement
// deadline, and results read and counted up to each Sync. What is sent when,
// and what becomes of each op at a Sync, is the Pipeline's (pipeline.h).
//
// Thread: the JS thread of one environment only.
// Ownership: created by Server, which keeps a raw pointer until it calls Close()
// or receives OnBroken(); the object deletes itself once its uv handles have
// closed, so a pointer must not be used after either of those.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "errors.h"
#include "loop.h"
#include "pipeline.h"
#include "sql.h"

namespace spg {

class Connection;

class ConnectionDelegate {
 public:
  virtual ~ConnectionDelegate() = default;
  // The connection is in pipeline mode and may send setup ops.
  virtual void OnConnected(Connection* conn) = 0;
  // The connection failed and is closed; `ops` are every op not yet settled,
  // in submission order. Called at most once, and never after Close().
  virtual void OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) = 0;
  // A retired connection has settled its last op and closed itself.
  virtual void OnRetired(Connection* conn) = 0;
};

// One host of a multi-host entry: every option of the entry, with host,
// hostaddr and port narrowed to that host's (PQconnectStartParams keywords).
struct ConnectTarget {
  std::vector<std::string> keywords, values;
  std::string label;  // host:port, for messages
};

struct ConnectionConfig {
  int server = 0;
  std::string conninfo;
  // why: libpq walks a multi-host entry by itself, but PQconnectPoll ignores
  // connect_timeout, so our one timer would cover every host and a hung first
  // host would use it all up. Hosts are then tried one at a time, each under
  // its own connect timeout. Empty: the whole entry in one attempt.
  std::vector<ConnectTarget> targets;
  std::vector<std::string> secrets;  // the entry's passwords, scrubbed from messages
  double connect_timeout_ms = 5000;
  double statement_timeout_ms = 5000;
  size_t max_in_flight = 1000;
  size_t max_batch = 1;  // ops per Sync; 1 = every op commits on its own
  // What Statement::Prepared(key) stands for: its name on the wire, or its text.
  std::vector<Sql::Prepared> statements;
  // pooler 'transaction': each transaction may run on another backend, so
  // those statements go unnamed, with their text, in the transaction itself.
  bool unnamed = false;
};

class Connection : private Wire {
 public:
  Connection(Loop* loop, ConnectionDelegate* delegate, ConnectionConfig config);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts PQconnectStartParams; on an immediate failure returns the error and the
  // connection is already closed (no OnBroken follows).
  ErrorInfo Start();
  void Enqueue(OpPtr op);
  // Setup is complete: ordinary ops may go out.
  void MarkReady();
  // The statements that ops name by key, before MarkReady (setup picks them
  // from what it found of the table).
  void UseStatements(std::vector<Sql::Prepared> statements) {
    config_.statements = std::move(statements);
  }
  // Closes now; ops not yet settled are dropped without a callback (the caller has
  // drained them or the environment is going away). Idempotent.
  void Close();
  // Closes a connection that is not ready yet and hands back every op not yet
  // settled: none of its ordinary ops has been sent, so they may go elsewhere.
  std::deque<OpPtr> Withdraw();
  // Fails the connection with `error` (e.g. an unusable table found during setup):
  // the delegate gets OnBroken with every unsettled op.
  void Fail(ErrorInfo error);
  // Stops taking new ops and closes once the ones in flight have settled.
  void Retire();

  // Called by Addon once per loop turn for connections with unsent output.
  void Flush();

  bool ready() const { return state_ == State::kReady; }
  bool closed() const { return state_ == State::kClosed; }
  size_t pending() const { return pipeline_.pending(); }
  size_t pending_sent() const { return pipeline_.pending_sent(); }
  // Whether an operation on this session id is queued or in flight here.
  bool HasPending(const std::string& key) const { return pipeline_.HasPending(key); }
  PGconn* pg() const { return conn_; }

 private:
  // Where the connection stands. Changed only by To(), and only forward
  // (MarkReady is the one step a delegate takes); retiring is apart from it,
  // since a connection still in setup may be retired too.
  enum class State : uint8_t {
    kIdle,        // made; Start() not called yet
    kConnecting,  // PQconnectPoll steps, under the connect timeout
    kSetup,       // in pipeline mode: only setup ops go out
    kReady,       // setup done: every op goes out
    kClosed,      // its handles are closing; it deletes itself once they have
  };
  void To(State next);
  bool open() const { return state_ == State::kSetup || state_ == State::kReady; }
  ~Connection();

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Poll(int status, int events);
  static void OnTimer(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);

  void ContinueConnect();
  ErrorInfo StartAttempt();
  void DropAttempt();
  void ConnectFailed(ErrorInfo error);
  void NoteTargetFailed(const ErrorInfo& error);
  void HandleReadable();
  void SendQueued();
  void FlushOutput();
  bool ProcessResults();
  void StatementsDone();
  void Complete();
  bool WatchSocket(int events);
  void UpdateInterest();
  void UpdateDeadline();
  void UpdateRef();
  void MarkDirty();
  void CloseHandles();
  // Wire: how the pipeline's statements and Syncs reach libpq.
  bool Send(const Statement& s) override;
  bool Sync() override;
  ErrorInfo LostError(const char* code);

  Loop* loop_;
  ConnectionDelegate* delegate_;
  ConnectionConfig config_;
  Pipeline pipeline_;
  PGconn* conn_ = nullptr;  // owned; PQfinish in CloseHandles()
  State state_ = State::kIdle;
  bool retiring_ = false;
  bool dirty_ = false;       // registered with Addon for the next flush
  bool want_write_ = false;  // PQflush reported unsent output
  int watched_events_ = 0;
  size_t target_ = 0;           // the host of config_.targets being tried
  std::string target_errors_;  // why each host tried before it failed
  int pending_closes_ = 0;     // uv handles still closing; delete this at 0
  uv_poll_t* poll_ = nullptr;  // owned; freed in OnHandleClosed
  uv_timer_t* timer_ = nullptr;
  const Op* deadline_for_ = nullptr;  // the head op the running deadline belongs to
  size_t head_statement_ = 0;         // which statement of the head op results are for
};

}  // namespace spg
