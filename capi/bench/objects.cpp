// A C++ program made of many small objects, the way ordinary C++ allocates:
// every std::string longer than its 15-byte inline buffer, every map, list and
// hash node, every vector growth and every make_shared is one malloc, and
// every destructor a free.
//
// Two worker threads each run ROUNDS rounds. A round builds and then destroys
//   - a std::map<std::string, std::vector<int>> (node + key + growing vector),
//   - a std::unordered_map<std::string, std::string> whose values grow by
//     std::string concatenation,
//   - a std::list<std::string> that is spliced and thinned,
//   - a std::shared_ptr graph (a tree with extra shared edges and weak parent
//     links), released all at once by dropping the root,
// and also a batch of messages that it hands to the other thread, which reads
// and destroys them: those objects are freed by the thread that did not
// allocate them. Each thread's work is fixed by its own seeded xorshift
// generator and messages are consumed in the order they were sent, so the
// checksum printed is the same on every allocator and every run; contents are
// checked as they are read, and a mismatch exits 1 with a message.
//
//   g++ -O2 -std=c++17 -pthread -o objects objects.cpp && ./objects [rounds]
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

uint64_t xorshift(uint64_t &s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull + 0x9e37; }

[[noreturn]] void corrupt(const char *what, uint64_t a) {
    std::fprintf(stderr, "objects: %s (%llu)\n", what, (unsigned long long)a);
    std::exit(1);
}

const char *const WORDS[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta",
                             "theta", "iota", "kappa", "lambda", "mu", "nu", "xi",
                             "omicron", "pi", "rho", "sigma", "tau", "upsilon"};
constexpr int NWORDS = sizeof(WORDS) / sizeof(WORDS[0]);

// A string of `n` words, built by concatenation (it reallocates as it grows).
std::string phrase(uint64_t &rng, int n) {
    std::string s;
    for (int i = 0; i < n; i++) {
        if (i) s += '-';
        s += WORDS[xorshift(rng) % NWORDS];
    }
    return s;
}

uint64_t maps(uint64_t &rng) {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 12000; i++) {
        uint64_t r = xorshift(rng);
        auto &v = m["key/" + std::to_string(r % 9000) + "/" + WORDS[(r >> 20) % NWORDS]];
        int n = 1 + (int)((r >> 32) % 20);
        for (int k = 0; k < n; k++) v.push_back((int)(r >> (k % 32)) & 0xffff);
    }
    // Erase about a third, then read what is left in key order.
    for (auto it = m.begin(); it != m.end();) {
        if (it->second.size() % 3 == 0)
            it = m.erase(it);
        else
            ++it;
    }
    uint64_t h = m.size();
    for (const auto &[k, v] : m) {
        h = mix(h, k.size());
        for (int x : v) h = mix(h, (uint64_t)x);
    }
    return h;
}

uint64_t hashes(uint64_t &rng) {
    std::unordered_map<std::string, std::string> u;
    for (int i = 0; i < 12000; i++) {
        uint64_t r = xorshift(rng);
        std::string key = "user:" + std::to_string(r % 6000) + ":" + phrase(rng, 1);
        std::string &val = u[key];
        val += phrase(rng, 1 + (int)((r >> 40) % 5));
        if (val.size() > 200) val.erase(0, 150); // shrink now and then
    }
    // Iteration order is the library's and the same everywhere, but do not
    // rely on it: combine per-entry values with a commutative sum.
    uint64_t h = u.size();
    for (const auto &[k, v] : u) h += mix(k.size() * 1315423911u, v.size()) + (uint8_t)v[0];
    return h;
}

uint64_t lists(uint64_t &rng) {
    std::list<std::string> a, b;
    for (int i = 0; i < 10000; i++) {
        uint64_t r = xorshift(rng);
        (r & 1 ? a : b).push_back(phrase(rng, 1 + (int)((r >> 8) % 6)));
    }
    // Move every other element of b into a, then drop every third of a.
    auto pos = a.begin();
    for (auto it = b.begin(); it != b.end();) {
        auto next = std::next(it);
        a.splice(pos, b, it);
        if (next == b.end()) break;
        it = std::next(next);
        if (pos != a.end()) ++pos;
    }
    int i = 0;
    for (auto it = a.begin(); it != a.end();) it = (i++ % 3 == 0) ? a.erase(it) : std::next(it);
    uint64_t h = a.size() * 7 + b.size();
    for (const auto &s : a) h = mix(h, s.size());
    return h;
}

struct Node {
    uint64_t id;
    std::string label;
    std::vector<std::shared_ptr<Node>> kids;
    std::weak_ptr<Node> parent;
};

uint64_t graph(uint64_t &rng) {
    std::vector<std::shared_ptr<Node>> all;
    auto root = std::make_shared<Node>();
    root->id = 0;
    all.push_back(root);
    for (uint64_t i = 1; i < 8000; i++) {
        uint64_t r = xorshift(rng);
        auto n = std::make_shared<Node>();
        n->id = i;
        if (r & 3) n->label = phrase(rng, 1 + (int)((r >> 4) % 4));
        auto &p = all[(r >> 16) % all.size()];
        n->parent = p;
        p->kids.push_back(n);
        if ((r >> 40) % 8 == 0) all[(r >> 44) % all.size()]->kids.push_back(n); // a shared edge
        all.push_back(std::move(n));
    }
    // Walk each node's kids and parent link; then only the root holds the graph.
    uint64_t h = 0;
    for (const auto &n : all) {
        auto p = n->parent.lock();
        if (n->id != 0 && (!p || p->id >= n->id)) corrupt("graph parent link broken", n->id);
        h = mix(h, n->id * 31 + n->label.size() + n->kids.size() + (uint64_t)n.use_count());
    }
    all.clear();
    return h; // root goes out of scope here: the whole graph is freed
}

// ---- cross-thread messages ---------------------------------------------------
struct Message {
    uint64_t seq;
    std::string text;
    std::vector<uint32_t> values;
    std::map<int, std::string> attrs;
};
using Batch = std::vector<std::unique_ptr<Message>>;

struct Inbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Batch> batches;
};

uint64_t msg_digest(uint64_t seq) { return seq * 0x9e3779b97f4a7c15ull; }

Batch make_batch(uint64_t &rng, uint64_t &seq) {
    Batch b;
    for (int i = 0; i < 1500; i++) {
        auto m = std::make_unique<Message>();
        m->seq = seq++;
        m->text = phrase(rng, 1 + (int)(xorshift(rng) % 8));
        uint64_t d = msg_digest(m->seq);
        int n = (int)(d >> 59); // 0..31 values
        for (int k = 0; k < n; k++) m->values.push_back((uint32_t)(d >> k));
        for (int k = 0; k < (int)(d % 4); k++) m->attrs[k] = m->text.substr(0, (size_t)k * 3);
        b.push_back(std::move(m));
    }
    return b;
}

uint64_t read_batch(Batch b, uint64_t &expect) { // destroys the batch
    uint64_t h = 0;
    for (const auto &m : b) {
        if (m->seq != expect++) corrupt("message out of order or corrupted", m->seq);
        uint64_t d = msg_digest(m->seq);
        if (m->values.size() != (size_t)(d >> 59)) corrupt("message values corrupted", m->seq);
        for (size_t k = 0; k < m->values.size(); k++)
            if (m->values[k] != (uint32_t)(d >> k)) corrupt("message value corrupted", m->seq);
        if (m->attrs.size() != d % 4) corrupt("message attrs corrupted", m->seq);
        for (const auto &[k, v] : m->attrs)
            if (v.compare(0, std::string::npos, m->text, 0, (size_t)k * 3) != 0) corrupt("message attr corrupted", m->seq);
        h = mix(h, m->text.size() + m->values.size());
    }
    return h;
}

Inbox inbox[2];

void worker(int t, int rounds, uint64_t *out) {
    uint64_t rng = 0x243f6a8885a308d3ull + (uint64_t)t * 0x13198a2e03707344ull;
    uint64_t sent = 0, received = 0, h = 0;
    for (int round = 0; round < rounds; round++) {
        Batch b = make_batch(rng, sent);
        {
            std::lock_guard<std::mutex> g(inbox[1 - t].mu);
            inbox[1 - t].batches.push_back(std::move(b));
        }
        inbox[1 - t].cv.notify_one();

        h = mix(h, maps(rng));
        h = mix(h, hashes(rng));
        h = mix(h, lists(rng));
        h = mix(h, graph(rng));

        Batch in;
        {
            std::unique_lock<std::mutex> g(inbox[t].mu);
            inbox[t].cv.wait(g, [&] { return !inbox[t].batches.empty(); });
            in = std::move(inbox[t].batches.front());
            inbox[t].batches.pop_front();
        }
        h = mix(h, read_batch(std::move(in), received));
    }
    *out = h;
}

} // namespace

int main(int argc, char **argv) {
    int rounds = argc > 1 ? std::atoi(argv[1]) : 150;
    uint64_t sums[2] = {0, 0};
    std::thread a(worker, 0, rounds, &sums[0]), b(worker, 1, rounds, &sums[1]);
    a.join();
    b.join();
    std::printf("objects: 2 threads x %d rounds, checksums %llu %llu\n", rounds,
                (unsigned long long)sums[0], (unsigned long long)sums[1]);
    return 0;
}
