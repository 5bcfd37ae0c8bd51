"""Record the names of the threads the app starts (hook.rs embeds this
file), so the GIL-free dump can name them too: it cannot ask `threading`
while another thread holds the GIL.

Wrapping start() (not the thread's own bootstrap) keeps the hook out of the
new thread's stack: start() returns once ident and native_id are known.
Renames go through the `name` property, wrapped too."""
import threading

import uwsgi

_uwsgi_rs_orig_start = threading.Thread.start


def _uwsgi_rs_register(thread):
    try:
        if thread.ident == threading.get_ident():
            # The calling thread asks the kernel: after a fork (a worker
            # forked from its loader) `native_id` keeps the parent's value.
            native = threading.get_native_id()
        else:
            native = getattr(thread, "native_id", 0) or 0
        uwsgi._register_thread(thread.ident, thread.name, native)
    except Exception:
        pass


def _uwsgi_rs_start(self):
    _uwsgi_rs_orig_start(self)
    _uwsgi_rs_register(self)


threading.Thread.start = _uwsgi_rs_start
_uwsgi_rs_name = threading.Thread.name


def _uwsgi_rs_set_name(self, name):
    _uwsgi_rs_name.fset(self, name)
    if self.ident is not None:
        _uwsgi_rs_register(self)


threading.Thread.name = property(_uwsgi_rs_name.fget, _uwsgi_rs_set_name,
                                 doc=_uwsgi_rs_name.__doc__)
