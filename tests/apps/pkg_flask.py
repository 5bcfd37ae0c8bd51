"""A small but typical Flask app: routes with converters, a JSON API, a
streamed response, a file upload, and a view that gets stuck."""

import hashlib
import threading
import time

from flask import Flask, Response, abort, jsonify, request, stream_with_context, url_for

app = Flask(__name__)
application = app  # the name uwsgi-rs looks for by default

ITEMS = {}
RELEASE = threading.Event()


@app.route("/")
def index():
    return f"<h1>pkg_flask</h1><a href='{url_for('hello', name='world')}'>hello</a>"


@app.route("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@app.route("/items/<int:item_id>")
def get_item(item_id):
    if item_id not in ITEMS:
        abort(404)
    return jsonify(ITEMS[item_id])


@app.route("/items", methods=["POST"])
def create_item():
    data = request.get_json(force=False, silent=True)
    if not isinstance(data, dict) or "name" not in data:
        return jsonify(error="a JSON object with a name is required"), 400
    item_id = len(ITEMS) + 1
    ITEMS[item_id] = {"id": item_id, "name": data["name"], "tags": data.get("tags", [])}
    return jsonify(ITEMS[item_id]), 201, {"Location": url_for("get_item", item_id=item_id)}


@app.route("/stream")
def stream():
    """Sends the first chunk at once, the rest only after /release."""
    RELEASE.clear()

    def generate():
        yield "chunk 0\n"
        if not RELEASE.wait(20):
            yield "timeout\n"
            return
        for i in range(1, 5):
            yield f"chunk {i}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.route("/release")
def release():
    RELEASE.set()
    return "released"


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files.get("file")
    if f is None:
        return jsonify(error="no file"), 400
    content = f.read()
    return jsonify(filename=f.filename, content_type=f.content_type, size=len(content),
                   sha256=hashlib.sha256(content).hexdigest(), form=request.form.to_dict())


@app.route("/stuck")
def stuck_view():
    time.sleep(float(request.args.get("s", "30")))
    return "unstuck"


@app.errorhandler(404)
def not_found(e):
    return jsonify(error="not found", path=request.path), 404
