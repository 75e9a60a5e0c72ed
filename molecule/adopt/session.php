<?php session_start(); $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1; echo 'count=', $_SESSION['n'];
