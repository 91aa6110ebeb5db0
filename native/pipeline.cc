#include "pipeline.h"

#include <algorithm>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace spg {

namespace {

// why: PostgreSQL takes at most 1 GB in one message and drops the connection
// on a longer one; a merged write of many large values (escaped: up to twice
// their size) would reach it. A batch stops at this many bytes of parameters,
// far below that, so its arrays also stay cheap for the server to parse; an op
// larger than this goes in a batch of its own.
constexpr size_t kMaxBatchBytes = 32u << 20;

// Op::bytes: each parameter as an array element, in quotes and escaped.
size_t WireBytes(const Op& op) {
  size_t bytes = 0;
  for (const Statement& s : op.statements) {
    for (const std::string& p : s.params) {
      size_t escaped = 0;
      for (char c : p) escaped += (c == '"') | (c == '\\');
      bytes += p.size() + escaped + 3;
    }
  }
  return bytes;
}

}  // namespace

Statement Statement::Prepare(std::string name, std::string sql, int param_count) {
  Statement s;
  s.kind = Kind::kPrepare;
  s.name = std::move(name);
  s.sql = std::move(sql);
  s.param_count = param_count;
  return s;
}

Statement Statement::Prepared(std::string name) {
  Statement s;
  s.kind = Kind::kPrepared;
  s.name = std::move(name);
  return s;
}

Statement Statement::Text(std::string sql) {
  Statement s;
  s.kind = Kind::kParams;
  s.sql = std::move(sql);
  return s;
}

Statement& Statement::Bind(std::string value) {
  params.push_back(std::move(value));
  is_null.push_back(0);
  return *this;
}

Statement& Statement::BindNull() {
  params.emplace_back();
  is_null.push_back(1);
  return *this;
}

std::vector<Decision> Decide(const std::vector<SyncOutcome>& batch, BatchEnd end) {
  std::vector<Decision> out(batch.size(), Decision::kHandBack);
  if (end == BatchEnd::kLost) return out;
  // An op whose own statement failed and whose later statements were then
  // skipped counts as aborted, not as the batch's failure. Only ops of one
  // statement share a batch, so such an op is alone in its batch, and settles
  // with its error either way.
  bool failed = false, at_commit = false;
  for (const SyncOutcome& op : batch) {
    failed = failed || (op.error && !op.aborted);
    at_commit = at_commit || op.at_commit;
  }
  size_t riders_left = 0;      // of the merged statement being walked
  bool merged_failed = false;  // that statement failed
  for (size_t i = 0; i < batch.size(); ++i) {
    const SyncOutcome& op = batch[i];
    bool in_failed_merge = false;
    if (op.riders > 0) {
      riders_left = op.riders;
      merged_failed = op.error && !op.aborted;
      in_failed_merge = merged_failed;
    } else if (riders_left > 0) {
      --riders_left;
      in_failed_merge = merged_failed;
    }
    const bool innocent = failed && !op.error;
    const bool suspect = (at_commit && batch.size() > 1) || in_failed_merge;
    out[i] = suspect ? Decision::kResendAlone : innocent ? Decision::kRetry : Decision::kSettle;
  }
  return out;
}

void Pipeline::Enqueue(OpPtr op) {
  op->results.resize(op->statements.size());
  if (op->bytes == 0) op->bytes = WireBytes(*op);
  bool behind_write = false;
  if (!op->key.empty()) {
    KeyCount& count = pending_keys_[op->key];
    behind_write = op->read_only && count.writes > 0;  // must see the writes issued before it
    ++count.ops;
    if (op->batchable) ++count.writes;
  }
  op->lane_ = op->batchable || behind_write ? Lane::kWrites : Lane::kOthers;
  Move(*op, Stage::kQueued);
  (op->lane_ == Lane::kWrites ? writes_ : others_).push_back(std::move(op));
}

// Bookkeeping when an op leaves the pipeline settled.
void Pipeline::Settled(const Op& op) {
  if (op.key.empty()) return;
  auto it = pending_keys_.find(op.key);
  if (it == pending_keys_.end()) return;
  if (op.batchable) --it->second.writes;
  if (--it->second.ops == 0) pending_keys_.erase(it);
}

// How many ops from `first` (at most `limit`, of at most `max_bytes` together
// unless the first alone is larger) go out as one merged statement: neighbours
// of one statement each with the same merge, none sent alone, and distinct
// session ids where the merge needs them.
size_t Pipeline::MergeRun(Queue::const_iterator first, Queue::const_iterator end, size_t limit,
                          size_t max_bytes) {
  const Merge* merge = (*first)->merge;
  if (limit < 2 || merge == nullptr) return 1;
  std::unordered_set<std::string_view> keys;
  size_t n = 0, bytes = 0;
  for (auto it = first; it != end && n < limit; ++it, ++n) {
    const Op& op = **it;
    if (op.merge != merge || op.solo_ || op.statements.size() != 1) break;
    if (n > 0 && bytes + op.bytes > max_bytes) break;
    if (merge->distinct_keys && !keys.insert(op.key).second) break;
    bytes += op.bytes;
  }
  return n == 0 ? 1 : n;
}

// Moves the ops that rode along with `head`'s merged statement (next in
// sent_); each shares its results and takes the row of its place.
void Pipeline::TakeRiders(const Op& head, Queue* into) {
  for (size_t i = 0; i < head.riders_ && !sent_.empty(); ++i) {
    OpPtr rider = std::move(sent_.front());
    sent_.pop_front();
    rider->results = head.results;
    rider->row = static_cast<int>(i + 1);
    into->push_back(std::move(rider));
  }
}

// Sends the `n` ops at `*at` in `queue` as one merged statement (n > 1) or
// the first alone, followed by a Sync if `sync`; moves them to sent_ and
// advances `*at` past them.
bool Pipeline::SendRun(Wire& wire, Queue& queue, Queue::iterator* at, size_t n, bool sync) {
  Op& head = ***at;
  bool ok = true;
  if (n > 1) {
    std::vector<const Statement*> parts;
    parts.reserve(n);
    for (size_t i = 0; i < n; ++i) parts.push_back(&(*at)[i]->statements[0]);
    ok = wire.Send(head.merge->build(parts));
    head.riders_ = n - 1;
  } else {
    for (const Statement& s : head.statements) {
      if (!(ok = wire.Send(s))) break;
    }
  }
  if (!ok || (sync && !wire.Sync())) return false;
  for (size_t i = 0; i < n; ++i) {
    Move(*(*at)[i], i > 0 ? Stage::kRiding : sync ? Stage::kEndsBatch : Stage::kSent);
    sent_.push_back(std::move((*at)[i]));
  }
  *at = queue.erase(*at, *at + n);
  return true;
}

Pipeline::SendResult Pipeline::SendQueued(Wire& wire, bool ready) {
  bool sent_any = false;
  // Reads and other single ops go out at once, pipelined. Reads waiting side by
  // side share one Sync (up to max_batch), and those of one kind one statement:
  // the server answers them in one send, and one failure only makes its
  // neighbours go again, as in a write batch. Everything else has a Sync of
  // its own.
  size_t reads_in_group = 0;
  for (auto it = others_.begin(); it != others_.end() && pending_sent() < max_in_flight_;) {
    const Op& op = **it;
    if (!ready && !op.setup) {
      ++it;
      continue;
    }
    const bool read = ready && op.read_only;
    const size_t room = max_in_flight_ - pending_sent();
    const size_t n =
        read ? MergeRun(it, others_.end(), std::min(max_batch_ - reads_in_group, room),
                        kMaxBatchBytes)
             : 1;
    const auto next = it + n;
    const bool group_next = read && next != others_.end() && (*next)->read_only &&
                            reads_in_group + n < max_batch_ && n < room;
    if (!SendRun(wire, others_, &it, n, !group_next)) return SendResult::kFailed;
    reads_in_group = group_next ? reads_in_group + n : 0;
    sent_any = true;
  }
  // One write batch at a time: whatever waits when the previous one has
  // committed goes out together, nothing waits for more.
  // A batch ends at max_batch ops or at kMaxBatchBytes, whichever comes first.
  if (ready && !batch_in_flight_ && !writes_.empty()) {
    size_t n = 0, bytes = 0;
    while (!writes_.empty() && n < max_batch_ && pending_sent() < max_in_flight_) {
      Op& op = *writes_.front();
      if (op.solo_ && n > 0) break;
      const size_t room = max_in_flight_ - pending_sent();
      const size_t group = MergeRun(writes_.begin(), writes_.end(), std::min(max_batch_ - n, room),
                                    kMaxBatchBytes - bytes);
      for (size_t i = 0; i < group; ++i) bytes += writes_[i]->bytes;
      const bool last = writes_.size() == group || n + group == max_batch_ || op.solo_ ||
                        writes_[group]->solo_ || group >= room ||
                        bytes + writes_[group]->bytes > kMaxBatchBytes;
      auto front = writes_.begin();
      if (!SendRun(wire, writes_, &front, group, last)) return SendResult::kFailed;
      n += group;
      sent_any = true;
      if (last) break;
    }
    batch_in_flight_ = n > 0;
  }
  return sent_any ? SendResult::kSent : SendResult::kNothing;
}

// The head op has all its results but shares a Sync (and a commit) with ops
// sent after it: it waits for that commit, reads included, since a read in a
// batch may have seen the batch's own uncommitted writes.
void Pipeline::HeadStatementsDone() {
  OpPtr op = std::move(sent_.front());
  sent_.pop_front();
  Move(*op, Stage::kCommitting);
  batch_.push_back(std::move(op));
  TakeRiders(*batch_.back(), &batch_);
}

// The batch (ops in batch_ plus the head) has committed, or, if one of its
// statements or its COMMIT failed, PostgreSQL rolled all of it back.
std::deque<OpPtr> Pipeline::SyncArrived() {
  Queue batch = std::move(batch_);
  batch_.clear();
  batch.push_back(std::move(sent_.front()));
  sent_.pop_front();
  TakeRiders(*batch.back(), &batch);
  if (batch.back()->lane_ == Lane::kWrites) batch_in_flight_ = false;

  const std::vector<Decision> decisions = Decide(Outcomes(batch), BatchEnd::kSync);
  Queue retry, settled;
  for (size_t i = 0; i < batch.size(); ++i) {
    OpPtr& op = batch[i];
    if (decisions[i] == Decision::kSettle) {
      Settled(*op);
      Move(*op, Stage::kIdle);
      settled.push_back(std::move(op));
      continue;
    }
    op->ClearOutcome();
    op->solo_ = op->solo_ || decisions[i] == Decision::kResendAlone;
    Move(*op, Stage::kQueued);
    retry.push_back(std::move(op));
  }
  // Their place is the front of their lane: no other write batch is in flight,
  // and reads grouped with each other were sent before anything still queued.
  for (auto it = retry.rbegin(); it != retry.rend(); ++it) {
    ((*it)->lane_ == Lane::kWrites ? writes_ : others_).push_front(std::move(*it));
  }
  return settled;
}

std::vector<SyncOutcome> Pipeline::Outcomes(const Queue& ops) {
  std::vector<SyncOutcome> out;
  out.reserve(ops.size());
  for (const OpPtr& op : ops) {
    out.push_back({static_cast<bool>(op->error), op->outcome == Outcome::kAborted,
                   op->outcome == Outcome::kFailedAtCommit, op->riders_});
  }
  return out;
}

std::deque<OpPtr> Pipeline::TakeAll() {
  Queue ops = std::move(batch_);
  batch_.clear();
  for (auto* queue : {&sent_, &writes_, &others_}) {
    for (auto& op : *queue) ops.push_back(std::move(op));
    queue->clear();
  }
  pending_keys_.clear();
  batch_in_flight_ = false;
  // The batch in flight ends without its Sync, and the ops queued behind it
  // with it: Decide() hands every one back, whatever results it already had.
  const std::vector<Decision> decisions = Decide(Outcomes(ops), BatchEnd::kLost);
  for (size_t i = 0; i < ops.size(); ++i) {
    Op& op = *ops[i];
    if (decisions[i] != Decision::kHandBack) continue;  // none: no Sync, nothing settles
    op.ClearOutcome();
    op.solo_ = false;
    op.lane_ = Lane::kOthers;
    Move(op, Stage::kIdle);
  }
  return ops;
}

}  // namespace spg
