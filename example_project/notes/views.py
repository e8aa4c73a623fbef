import time

from django.http import HttpResponse
from django.shortcuts import render

from .models import Note
from .release import RELEASE_NAME


def _mark(response):
    response["X-Example-Release"] = RELEASE_NAME
    return response


def home(request):
    return _mark(render(request, "notes/home.html", {"release": RELEASE_NAME}))


def notes(request):
    """Reads and writes the notes table, so a migration that breaks the old code shows here."""
    if request.method == "POST" or request.GET.get("write"):
        Note.objects.create(text=f"note from {RELEASE_NAME}")
    count = Note.objects.count()
    latest = list(Note.objects.order_by("-id").values_list("text", flat=True)[:3])
    return _mark(HttpResponse(f"release={RELEASE_NAME} notes={count} latest={latest}\n"))


def slow(request):
    seconds = min(float(request.GET.get("s", "5")), 30)
    time.sleep(seconds)
    return _mark(HttpResponse(f"release={RELEASE_NAME} slept={seconds}\n"))
