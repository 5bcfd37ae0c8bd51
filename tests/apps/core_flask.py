"""A Flask app for the end-to-end tests."""

import hashlib

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "flask index"


@app.route("/user/<name>")
def user(name):
    return jsonify(name=name, args=request.args.to_dict())


@app.route("/json", methods=["POST"])
def json_echo():
    data = request.get_json()
    return jsonify(received=data, doubled=[x * 2 for x in data.get("numbers", [])])


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    content = f.read()
    return jsonify(form=request.form.to_dict(), filename=f.filename,
                   size=len(content), sha256=hashlib.sha256(content).hexdigest())


@app.route("/missing-on-purpose-404")
def never():
    return "x"


@app.errorhandler(404)
def not_found(e):
    return jsonify(error="not found", path=request.path), 404
