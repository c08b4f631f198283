# Routes: / (hello), POST /echo (length and sha256 of the body), GET /bytes?n= (n random bytes,
# sha256 in x-sha256), GET /stream?n=&ms= (a StreamingHttpResponse of n chunks, ms apart).
import hashlib
import os
import time

import django
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def hello(request):
    return HttpResponse("hello from django %s" % django.get_version(), content_type="text/plain")


@csrf_exempt
def echo(request):
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = request.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"bytes": size, "sha256": digest.hexdigest()})


def random_bytes(request):
    body = os.urandom(int(request.GET.get("n", "0")))
    response = HttpResponse(body, content_type="application/octet-stream")
    response["X-Sha256"] = hashlib.sha256(body).hexdigest()
    return response


def stream(request):
    n = int(request.GET.get("n", "5"))
    ms = int(request.GET.get("ms", "100"))

    def chunks():
        for i in range(n):
            if i > 0:
                time.sleep(ms / 1000)
            yield "chunk %d %.3f\n" % (i, time.time())

    return StreamingHttpResponse(chunks(), content_type="text/plain")
