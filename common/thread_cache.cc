#include "common/thread_cache.h"

#include <utility>

namespace loom {

ThreadCache::ThreadCache(absl::Duration idle_timeout) : idle_timeout_(idle_timeout) {}

ThreadCache::~ThreadCache() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Idle threads see stopping_ and end; busy ones end after their closure. Threads move
    // themselves to ended_ as they end, so wait until none is left in threads_.
    mu_.Await(absl::Condition(
        +[](ThreadCache* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->threads_.empty();
        },
        this));
  }
  JoinEnded();
}

void ThreadCache::Run(std::function<void()> fn) {
  JoinEnded();
  absl::MutexLock lock(&mu_);
  if (idle_ > static_cast<int>(handed_.size())) {
    handed_.push_back(std::move(fn));  // an idle thread takes it
    return;
  }
  // The thread needs its own list position to move itself to ended_; the list node exists
  // before the thread starts, and list iterators stay valid while other nodes come and go.
  auto self = threads_.emplace(threads_.end());
  *self = std::thread([this, self, fn = std::move(fn)]() mutable { Loop(self, std::move(fn)); });
}

void ThreadCache::Loop(std::list<std::thread>::iterator self, std::function<void()> first) {
  std::function<void()> fn = std::move(first);
  while (true) {
    fn();
    fn = nullptr;  // its captures are released before this thread waits
    absl::MutexLock lock(&mu_);
    ++idle_;
    const bool handed = mu_.AwaitWithTimeout(
        absl::Condition(
            +[](ThreadCache* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return !self->handed_.empty() || self->stopping_;
            },
            this),
        idle_timeout_);
    --idle_;
    if (handed && !handed_.empty()) {
      fn = std::move(handed_.front());
      handed_.pop_front();
      continue;
    }
    // Idle too long, or stopping: this thread ends. Its handle goes to ended_ to be joined
    // by the next Run or the destructor (a thread cannot join itself).
    ended_.push_back(std::move(*self));
    threads_.erase(self);
    return;
  }
}

void ThreadCache::JoinEnded() {
  std::vector<std::thread> ended;
  {
    absl::MutexLock lock(&mu_);
    ended.swap(ended_);
  }
  for (std::thread& t : ended) t.join();
}

int ThreadCache::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

int ThreadCache::idle() const {
  absl::MutexLock lock(&mu_);
  return idle_;
}

}  // namespace loom
