"""The Python side of the tracebacker's GIL path (gil_path.rs, which
embeds this file): collect(with_locals) runs with the GIL on the collector
thread and returns every other thread's frames, outermost first, plus the
names `threading` knows."""
import linecache
import reprlib
import sys
import threading


class _BoundedRepr(reprlib.Repr):
    """reprlib bounds containers and strings; for other objects call their
    own __repr__, letting its exception reach the caller (reprlib's default
    would swallow it), and cut the result."""
    def repr_instance(self, x, level):
        s = repr(x)
        return s if len(s) <= self.maxother else s[: self.maxother - 3] + "..."

_repr = _BoundedRepr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlevel = 2

def _locals(f):
    out = []
    try:
        items = list(f.f_locals.items())[:50]
    except Exception:
        return out
    for k, v in items:
        try:
            r = _repr.repr(v)[:120]
        except BaseException as e:
            r = "<repr failed: %s>" % type(e).__name__
        out.append((str(k), r))
    return out

def collect(with_locals):
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        frames = []
        f = frame
        while f is not None:
            co = f.f_code
            try:
                src = linecache.getline(co.co_filename, f.f_lineno).strip()
            except Exception:
                src = ""
            frames.append((co.co_filename, f.f_lineno or 0, co.co_name, src,
                           _locals(f) if with_locals else []))
            f = f.f_back
        frames.reverse()
        out.append((ident, names.get(ident), frames))
    return out, list(names.items())
